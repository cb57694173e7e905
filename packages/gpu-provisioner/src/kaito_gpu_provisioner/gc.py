"""Which cloud capacity is orphaned (pure).

Why: a NodeClaim deleted while its agent pool was still being created (or a provisioner crash
between PUT and status write) leaves capacity nobody owns, and GPU VMs are expensive. An
instance whose claim no longer exists and that is older than a grace period is collected; the
grace period protects capacity whose NodeClaim the informer has not shown us yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from kaito_gpu_provisioner.provisioner import Instance


def orphans(
    instances: Iterable[Instance],
    claim_names: Iterable[str],
    *,
    now: datetime,
    grace_seconds: float,
) -> Sequence[Instance]:
    """Instances without a NodeClaim, not already deleting, older than the grace period.

    An instance with no known creation time is treated as old enough: it carries none of our
    timestamps, so waiting would not make it safer.
    """
    names = set(claim_names)
    out: list[Instance] = []
    for inst in instances:
        if inst.claim_name in names or inst.deleting:
            continue
        if inst.created_at is not None and (now - inst.created_at).total_seconds() < grace_seconds:
            continue
        out.append(inst)
    return sorted(out, key=lambda i: i.claim_name)
