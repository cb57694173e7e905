"""Pure reconcile logic: observed state in, a ``Plan`` of writes and a status out."""
