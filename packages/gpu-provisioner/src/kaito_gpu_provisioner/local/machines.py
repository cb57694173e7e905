"""The wire model between the ``local`` provider and the node agent: what a machine is.

Why: the provisioner (in a pod) asks the node agent (on the host) for machines over HTTP, like
the Azure provider asks ARM for agent pools. Both sides import these models, so the request
the provider sends and the record the agent keeps cannot drift apart.

``MachineSpec`` is what the provider asks for; ``Machine`` is what the agent reports back.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from kaito_api.nodeclaim import Taint
from kaito_api.types import DNSLabel, LabelKey, LabelValue
from pydantic import BaseModel, ConfigDict, Field

PROVIDER_PREFIX = "local://"
"""A local node's ``spec.providerID`` is ``local://<machine name>``."""

MachineName = Annotated[DNSLabel, Field(max_length=40)]


class MachineSpec(BaseModel):
    """A node to bring up: its name, how it registers, and the fake GPUs it advertises."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: MachineName = Field(description="Node name (the NodeClaim's name).")
    instance_type: str = Field(
        min_length=1, max_length=128, description="node.kubernetes.io/instance-type label."
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Labels the kubelet registers the node with."
    )
    taints: list[Taint] = Field(
        default_factory=list, description="Taints the kubelet registers the node with."
    )
    gpus: int = Field(
        default=0, ge=0, le=16, description="nvidia.com/gpu capacity the node advertises."
    )


class MachinePhase(StrEnum):
    STARTING = "Starting"
    """Network, containerd, kubelet and kube-proxy are being started."""
    RUNNING = "Running"
    """Its processes run; the kubelet registers (or has registered) the Node."""
    STOPPING = "Stopping"
    FAILED = "Failed"
    """It could not be started; ``message`` says why. Deleting it cleans up."""


class Machine(BaseModel):
    """A machine as the agent reports it."""

    model_config = ConfigDict(extra="forbid")

    spec: MachineSpec
    phase: MachinePhase
    message: str = ""
    index: int = Field(ge=0, description="Its slot in the node network and pod CIDR.")
    node_ip: str
    pod_cidr: str
    created_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def provider_id(self) -> str:
        return PROVIDER_PREFIX + self.spec.name


class MachineList(BaseModel):
    items: list[Machine]


class AgentError(BaseModel):
    """The agent's error body (4xx/5xx)."""

    error: str
