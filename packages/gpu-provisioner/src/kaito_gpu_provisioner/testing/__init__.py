"""Test doubles shipped with the package: an in-memory Kubernetes and an ARM-compatible server.

They live in the package (not in ``tests/``) so that the e2e suite, the benchmark and the quick
start can use them too.
"""
