"""Shared fixtures and helpers for end-to-end tests on a real local cluster."""
