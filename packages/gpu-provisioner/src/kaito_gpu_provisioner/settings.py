"""Provisioner configuration, read once from the environment (prefix ``KAITO_PROVISIONER_``).

Why: this is the only module that reads the environment; everything else gets a `Settings`
object (through kopf's ``memo``). The chart renders these variables, and the quick start sets
them by hand. Nested Azure settings use ``__`` (``KAITO_PROVISIONER_AZURE__SUBSCRIPTION_ID``).

Azure credentials are the one exception by design: ``azure-identity`` reads the standard
``AZURE_CLIENT_ID`` / ``AZURE_TENANT_ID`` / ``AZURE_FEDERATED_TOKEN_FILE`` (injected by the
workload-identity webhook) or ``AZURE_CLIENT_SECRET`` itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from kaito_api.leader_election import ElectionTimings
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$")


class AzureSettings(BaseModel):
    """Where the AKS cluster lives and how to reach ARM."""

    subscription_id: str = Field(default="", description="Subscription of the AKS cluster.")
    resource_group: str = Field(
        default="", description="Resource group of the managed cluster resource (not MC_...)."
    )
    cluster_name: str = Field(default="", description="AKS cluster name.")
    location: str = Field(default="", description="Region; used in operation URLs and logs.")
    node_resource_group: str = Field(
        default="", description="MC_ group; only used to describe nodes, optional."
    )
    arm_endpoint: str = Field(
        default="https://management.azure.com",
        description="ARM base URL; a local fake for tests (https://127.0.0.1:PORT).",
    )
    arm_ca_bundle: Path | None = Field(
        default=None, description="CA bundle to trust for the ARM endpoint (a local fake's CA)."
    )
    credential: Literal["workload-identity", "environment", "default", "static-token"] = Field(
        default="default",
        description=(
            "workload-identity: federated token file (in cluster); environment: "
            "AZURE_CLIENT_SECRET etc.; default: DefaultAzureCredential; static-token: the fixed "
            "token below, for the local ARM fake only."
        ),
    )
    static_token: str = Field(default="", description="Bearer token for credential=static-token.")
    polling_interval_seconds: float = Field(
        default=10.0, gt=0, description="LRO poll interval when ARM sends no Retry-After."
    )
    retry_total: int = Field(
        default=3, ge=0, description="SDK retries of 429/5xx before the error is classified."
    )
    gpu_driver: Literal["Install", "None"] = Field(
        default="Install",
        description="gpuProfile.driver for GPU SKUs; None when the NVIDIA GPU operator is used.",
    )

    @model_validator(mode="after")
    def _static_token_needs_token(self) -> AzureSettings:
        if self.credential == "static-token" and not self.static_token:
            raise ValueError("azure.static_token: required when azure.credential is static-token")
        return self

    def require_cluster(self) -> None:
        """Raise naming the first missing field; the azure provider cannot run without them."""
        for name in ("subscription_id", "resource_group", "cluster_name"):
            if not getattr(self, name):
                raise ValueError(f"azure.{name}: required for the azure provider")
        if not _CLUSTER_NAME.match(self.cluster_name):
            raise ValueError(f"azure.cluster_name: {self.cluster_name!r} is not a valid AKS name")


class LocalSettings(BaseModel):
    """Where the node agent of the local cluster serves (provider ``local``)."""

    agent_url: str = Field(
        default="", description="http://HOST:PORT of the node agent (hack/local-cluster.sh info)."
    )
    token: SecretStr = Field(
        default=SecretStr(""), description="Bearer token of the node agent (never logged)."
    )

    @field_validator("token", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        # A token read from a file (a Secret made with --from-file) ends with a newline.
        return value.strip() if isinstance(value, str) else value

    def require(self) -> None:
        if not self.agent_url.startswith(("http://", "https://")):
            raise ValueError(
                f"local.agent_url: {self.agent_url!r} is not an http(s) URL; set "
                "KAITO_PROVISIONER_LOCAL__AGENT_URL (chart value local.agentUrl)"
            )
        if not self.token.get_secret_value():
            raise ValueError(
                "local.token: required for the local provider; set KAITO_PROVISIONER_LOCAL__TOKEN "
                "(chart value local.tokenSecret)"
            )


class LeaderElectionSettings(BaseModel):
    """One replica launches NodeClaims at a time; the others wait on a coordination.k8s.io
    Lease (``kaito_api.leader_election`` holds the rules)."""

    enabled: bool = Field(default=True, description="Elect a leader among the replicas.")
    lease_name: str = Field(default="gpu-provisioner", description="Name of the Lease.")
    namespace: str = Field(
        default="gpu-provisioner", description="Namespace of the Lease (the chart's release)."
    )
    lease_duration_seconds: float = Field(
        default=15.0, gt=0, description="Wait on an unrenewed lease before taking it over."
    )
    renew_deadline_seconds: float = Field(
        default=10.0, gt=0, description="The leader stops if it cannot renew for this long."
    )
    retry_period_seconds: float = Field(
        default=2.0, gt=0, description="How often replicas try to acquire or renew."
    )
    identity: str = Field(
        default="", description="This replica's name in the Lease; empty: hostname_pid."
    )

    @model_validator(mode="after")
    def _consistent(self) -> LeaderElectionSettings:
        self.timings()  # raises with the rule spelled out
        return self

    def timings(self) -> ElectionTimings:
        return ElectionTimings(
            lease_duration=self.lease_duration_seconds,
            renew_deadline=self.renew_deadline_seconds,
            retry_period=self.retry_period_seconds,
        )


class Settings(BaseSettings):
    """Everything the provisioner process can be told."""

    model_config = SettingsConfigDict(
        env_prefix="KAITO_PROVISIONER_", env_nested_delimiter="__", extra="forbid"
    )

    provider: Literal["azure", "kwok", "local"] = Field(
        default="kwok", description="Which NodeProvisioner serves the NodeClaims."
    )
    kwok_delay_seconds: float = Field(
        default=0.0, ge=0, description="KWOK: seconds after claim creation before its node appears."
    )
    sync_interval_seconds: float = Field(
        default=1.0, gt=0, description="Requeue delay while a claim waits for its node."
    )
    resync_interval_seconds: float = Field(
        default=60.0, gt=0, description="Periodic re-check of Ready claims (node health)."
    )
    failure_retry_seconds: float = Field(
        default=300.0, gt=0, description="Retry delay after a non-retryable launch failure."
    )
    drain_timeout_seconds: float = Field(
        default=300.0, ge=0, description="Give up evicting pods after this; delete anyway."
    )
    gc_interval_seconds: float = Field(
        default=120.0, gt=0, description="How often orphaned cloud capacity is collected."
    )
    gc_grace_seconds: float = Field(
        default=30.0, ge=0, description="Age before a capacity without NodeClaim is collected."
    )
    health_port: int = Field(default=8081, ge=0, le=65535, description="Liveness port; 0 = off.")
    log_format: Literal["text", "json"] = Field(default="text", description="Log output format.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")
    azure: AzureSettings = Field(default_factory=AzureSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)

    @field_validator("provider", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _azure_complete(self) -> Settings:
        if self.provider == "azure":
            self.azure.require_cluster()
        if self.provider == "local":
            self.local.require()
        return self
