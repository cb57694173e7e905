"""The controller's ``LeaseStore``: the leader-election Lease read and written through
``KubeClient``.

Why: ``kaito_api.leader_election`` decides who leads; this adapter is the only I/O it needs,
with the API server's resourceVersion check turning a racing write into ``LeaseConflict``.
"""

from __future__ import annotations

from kaito_api.leader_election import LEASE_API_VERSION, LeaseConflict, LeaseRecord

from kaito_controller.k8s.client import KubeClient, KubeError, ObjectRef


class KubeLeaseStore:
    """One named Lease in one namespace."""

    def __init__(self, client: KubeClient, name: str, namespace: str) -> None:
        self.client = client
        self.ref = ObjectRef(LEASE_API_VERSION, "Lease", name, namespace)

    async def read(self) -> LeaseRecord | None:
        lease = await self.client.get(self.ref)
        return LeaseRecord.from_manifest(lease) if lease else None

    async def write(self, record: LeaseRecord) -> LeaseRecord:
        manifest = record.to_manifest(self.ref.name, self.ref.namespace or "")
        try:
            if record.resource_version is None:
                written = await self.client.create(manifest)
            else:  # a merge patch carrying resourceVersion fails with 409 if it changed
                written = await self.client.patch(
                    self.ref, {"metadata": manifest["metadata"], "spec": manifest["spec"]}
                )
        except KubeError as err:
            if err.status == 409:
                raise LeaseConflict(str(err)) from err
            raise
        return LeaseRecord.from_manifest(written)
