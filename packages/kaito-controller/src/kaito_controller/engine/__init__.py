"""The reconcile engine: the de-duplicating work queue (``queue``), the workers that drain it
(``workers``) and the executor of one observe-plan-execute pass (``executor``). No kopf here:
the kopf handlers in ``kaito_controller.handlers`` only feed the queue."""
