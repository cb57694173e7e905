"""A recording fake ``NodeProvisioner``, in the manner of Karpenter's ``cloudprovider/fake``.

Why: the NodeClaim controller's behaviour at the seam (what it asks the cloud, in which order,
how it reacts to each typed error) is best tested against a provider that does exactly what the
test says and remembers every call, rather than through the KWOK or Azure providers, whose own
rules would be tested at the same time. Errors are injected per method (``next_create_error``
answers the next ``create`` only) and ``allowed_create_calls`` caps launches, as in Karpenter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from kaito_api.nodeclaim import NodeClaim

from kaito_gpu_provisioner.claims import required_instance_type
from kaito_gpu_provisioner.provisioner import (
    Instance,
    InsufficientCapacity,
    NodeClaimNotFound,
    ProvisionerError,
)


@dataclass
class FakeNodeProvisioner:
    """Satisfies the ``NodeProvisioner`` protocol; every call is recorded in order."""

    name: str = "fake"
    capacity: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu": "1"})
    allowed_create_calls: int | None = None
    """How many creates may launch; later ones raise InsufficientCapacity (None: no cap)."""
    next_create_error: ProvisionerError | None = None
    next_delete_error: ProvisionerError | None = None
    next_get_error: ProvisionerError | None = None
    create_calls: list[NodeClaim] = field(default_factory=list[NodeClaim])
    delete_calls: list[NodeClaim] = field(default_factory=list[NodeClaim])
    get_calls: list[str] = field(default_factory=list[str])
    list_calls: int = 0
    instances: dict[str, Instance] = field(default_factory=dict[str, Instance])
    """What the fake cloud has, by claim name (tests may add orphans here)."""

    def _raise_injected(self, attribute: str) -> None:
        """Raise the error injected for the next call of one method, once."""
        err: ProvisionerError | None = getattr(self, attribute)
        if err is not None:
            setattr(self, attribute, None)
            raise err

    def _instance(self, claim_name: str) -> Instance:
        instance = self.instances.get(claim_name)
        if instance is None:
            raise NodeClaimNotFound(f"fake: {claim_name} has no capacity")
        return instance

    async def create(self, claim: NodeClaim) -> Instance:
        self.create_calls.append(claim)
        self._raise_injected("next_create_error")
        existing = self.instances.get(claim.name)
        if existing is not None:  # idempotent: adopt what an earlier call launched
            return existing
        if (
            self.allowed_create_calls is not None
            and len(self.instances) >= self.allowed_create_calls
        ):
            raise InsufficientCapacity(f"fake: no capacity left for {claim.name}")
        instance = Instance(
            claim_name=claim.name,
            instance_type=required_instance_type(claim),
            provider_id=f"fake:///{claim.name}",
            node_name=f"node-{claim.name}",
            labels=dict(claim.labels),
            capacity=dict(self.capacity),
            created_at=claim.created_at,
        )
        self.instances[claim.name] = instance
        return instance

    async def delete(self, claim: NodeClaim) -> None:
        self.delete_calls.append(claim)
        self._raise_injected("next_delete_error")
        instance = self._instance(claim.name)
        if instance.deleting:  # the second call finds it gone
            del self.instances[claim.name]
            raise NodeClaimNotFound(f"fake: {claim.name} was deleted")
        self.instances[claim.name] = replace(instance, deleting=True)

    async def get(self, claim_name: str) -> Instance:
        self.get_calls.append(claim_name)
        self._raise_injected("next_get_error")
        return self._instance(claim_name)

    async def list(self) -> Sequence[Instance]:
        self.list_calls += 1
        return list(self.instances.values())

    def reset(self) -> None:
        """Forget calls, injected errors and instances (Karpenter's ``Reset``)."""
        self.create_calls.clear()
        self.delete_calls.clear()
        self.get_calls.clear()
        self.list_calls = 0
        self.instances.clear()
        self.next_create_error = self.next_delete_error = self.next_get_error = None
