"""An in-memory leader-election Lease (used by every package's tests).

Why: the controller and the provisioner both campaign for Leases; one in-memory Lease with the
API server's resourceVersion check lets each suite test its election wiring the same way.
"""

from __future__ import annotations

from dataclasses import replace

from kaito_api.leader_election import LeaseConflict, LeaseRecord


class MemoryLeaseStore:
    """One Lease with resourceVersion checks, like the API server; ``failing`` cuts it off."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.failing = False
        self.writes: list[str] = []  # holder of every successful write, in order

    async def read(self) -> LeaseRecord | None:
        if self.failing:
            raise OSError("API server unreachable")
        return self.record

    async def write(self, record: LeaseRecord) -> LeaseRecord:
        if self.failing:
            raise OSError("API server unreachable")
        current = self.record.resource_version if self.record else None
        if record.resource_version != current:
            raise LeaseConflict(f"resourceVersion {record.resource_version} != {current}")
        self.version += 1
        self.record = replace(record, resource_version=str(self.version))
        self.writes.append(record.holder)
        return self.record
