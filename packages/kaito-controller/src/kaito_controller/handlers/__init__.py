"""The I/O side: the work queue, observe-plan-execute, and the kopf handlers around them."""
