"""The workspace controller: reconciles Workspaces into GPU nodes and workloads."""

__version__ = "0.1.0"
