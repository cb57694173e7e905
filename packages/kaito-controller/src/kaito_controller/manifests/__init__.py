"""Pure builders of the Kubernetes objects a Workspace owns (plain dicts, no I/O)."""
