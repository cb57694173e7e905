"""Where a Workspace's GPU nodes come from: NodeClaims (auto-provisioning) or BYO nodes."""

from kaito_controller.capacity.base import CapacityRequest, CapacityStrategy, Readiness
from kaito_controller.capacity.byo import ByoCapacity
from kaito_controller.capacity.nodeclaims import NodeClaimCapacity

__all__ = ["ByoCapacity", "CapacityRequest", "CapacityStrategy", "NodeClaimCapacity", "Readiness"]
