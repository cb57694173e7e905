"""The `NodeProvisioner` seam: the only thing the NodeClaim controller knows about clouds.

Why: the controller (lifecycle, termination, garbage collection) must not care whether a node
comes from an AKS agent pool or from a KWOK fake. Each provider implements this Protocol and
reports failures with the typed errors below; the ``reason`` of an error is what lands on the
NodeClaim's ``Launched`` condition, so a quota error reaches the Workspace as ``QuotaExceeded``
with the cloud's message instead of a generic ``LaunchFailed``.

The contract mirrors Karpenter's ``CloudProvider`` cut down to what KAITO needs:

* ``create`` is idempotent and restart-safe: calling it again for the same claim adopts what an
  earlier call started (it never creates a second node). It returns the launched ``Instance`` once
  the node object exists, or raises ``LaunchPending`` with a suggested retry delay.
* ``delete`` raises ``NodeClaimNotFound`` once the capacity is really gone; any normal return
  means "still deleting, call again".
* ``get``/``list`` describe what the cloud has, for garbage collection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kaito_api.nodeclaim import NodeClaim


@dataclass(frozen=True)
class Instance:
    """A node the cloud has (or is making) for one NodeClaim."""

    claim_name: str
    """Name of the NodeClaim this capacity belongs to (AKS: the agent pool name)."""
    instance_type: str
    provider_id: str = ""
    """The Node's ``spec.providerID``; empty while no Node exists yet."""
    node_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict[str, str])
    capacity: Mapping[str, str] = field(default_factory=dict[str, str])
    state: str = ""
    """Provider state, e.g. the agent pool's provisioningState; informational."""
    created_at: datetime | None = None
    """When the owning NodeClaim was created (from the instance's own records), for GC grace."""
    deleting: bool = False


class NodeProvisioner(Protocol):
    """Creates and deletes GPU nodes for NodeClaims. Implementations must be idempotent."""

    name: str

    async def create(self, claim: NodeClaim) -> Instance:
        """Launch (or adopt) the capacity for ``claim``; return it once its Node exists.

        Raises:
            LaunchPending: the capacity is on its way; call again after ``retry_after``.
            ProvisionerError: a classified failure (its ``reason`` goes on ``Launched``).
        """
        ...

    async def delete(self, claim: NodeClaim) -> None:
        """Start or continue deleting the capacity of ``claim``.

        Raises:
            NodeClaimNotFound: the capacity is gone (the caller may release the claim).
        """
        ...

    async def get(self, claim_name: str) -> Instance:
        """Describe the capacity of one claim; raise ``NodeClaimNotFound`` if there is none."""
        ...

    async def list(self) -> Sequence[Instance]:
        """Every instance this provisioner manages, including ones without a NodeClaim."""
        ...


class ProvisionerError(Exception):
    """Base of every provisioner failure.

    Attributes:
        reason: CamelCase reason for the NodeClaim condition (CRD pattern ``^[A-Za-z]...``).
        retryable: whether the same request may succeed later without anyone changing anything.
        retry_after: seconds the caller should wait before trying again (None: its own backoff).
    """

    reason: str = "LaunchFailed"
    retryable: bool = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable


class NodeClaimNotFound(ProvisionerError):
    """The claim's capacity does not exist (any more)."""

    reason = "NotFound"


class LaunchPending(ProvisionerError):
    """The capacity is being created; not an error, just not done yet."""

    reason = "Launching"


class InvalidNodeClaim(ProvisionerError):
    """The NodeClaim cannot be served as written (bad name, no instance type, no storage)."""

    reason = "InvalidNodeClaim"
    retryable = False


class InsufficientCapacity(ProvisionerError):
    """The cloud will not give this capacity now: quota or SKU/zone availability."""

    reason = "InsufficientCapacity"
    retryable = False


class QuotaExceeded(InsufficientCapacity):
    """The subscription's quota for the VM family or region is exhausted."""

    reason = "QuotaExceeded"


class SkuNotAvailable(InsufficientCapacity):
    """The VM size is not offered (or has no capacity) in the region or zone."""

    reason = "SkuNotAvailable"


class Throttled(ProvisionerError):
    """The cloud asked us to slow down; ``retry_after`` carries its Retry-After."""

    reason = "Throttled"


class AuthenticationFailed(ProvisionerError):
    """Credentials are missing, invalid, or lack permission."""

    reason = "AuthenticationFailed"
    retryable = False


class CloudError(ProvisionerError):
    """Any other cloud failure: 5xx, network, conflicts, unknown codes. Retried with backoff."""

    reason = "CloudError"
