"""Workspace and NodeClaim API types, and the CRD generator."""

__version__ = "0.1.0"
