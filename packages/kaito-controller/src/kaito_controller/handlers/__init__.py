"""The kopf handlers (``kopf_handlers``) and the table of kinds they watch (``watches``): they
record events in the read cache and enqueue Workspaces for ``kaito_controller.engine``."""
