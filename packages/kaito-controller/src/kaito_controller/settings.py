"""Controller configuration, read once from ``KAITO_CONTROLLER_*`` environment variables.

Why: one typed place for every knob (images, provisioning mode, webhook, timings). ``main``
builds it once and passes it down; nothing else in the controller reads the environment. The
chart renders these variables from its values (``templates/_env.tpl``).
"""

from __future__ import annotations

from typing import Literal

from kaito_api.leader_election import ElectionTimings
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kaito_controller.manifests.nodeclaim import NodeClaimTemplate


class ControllerSettings(BaseSettings):
    """All controller settings; the env var is ``KAITO_CONTROLLER_<FIELD NAME UPPER-CASED>``."""

    model_config = SettingsConfigDict(env_prefix="KAITO_CONTROLLER_", extra="ignore")

    # --- images -------------------------------------------------------------------------
    inference_image: str = Field(
        "ghcr.io/kaito-py/kaito-inference:0.1.0",
        description="Image of the inference server (runs `kaito-inference serve`).",
    )
    tuning_image: str = Field(
        "ghcr.io/kaito-py/kaito-tuning:0.1.0",
        description="Image of the tuning job (`kaito-tune`, `kaito-fetch-input`, push).",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Pull policy of the workload containers."
    )
    inference_backend: Literal["vllm", "transformers", "fake"] | None = Field(
        None,
        description=(
            "Force the inference server backend. Unset: vllm, or transformers when the "
            "Workspace has the annotation kaito.sh/runtime: transformers. `fake` serves a "
            "CPU echo model (local runs without a GPU)."
        ),
    )
    model_override: str | None = Field(
        None,
        description=(
            "Serve (and tune) this model (a path inside the inference image, or a Hugging Face "
            "id) instead of every preset's own weights, keeping the preset's name and sizing. "
            "Tuning Jobs copy a path's files from the inference image as their base weights. "
            "For smoke tests with a tiny CPU model (local clusters, kind); never in production."
        ),
    )

    model_override_image: str | None = Field(
        None,
        description=(
            "Image holding the model_override path, for the tuning Job's init container that "
            "copies it as the base weights. Unset: the inference image."
        ),
    )
    registry_plain_http: bool = Field(
        False, description="Talk to registries over plain HTTP (local test registries only)."
    )
    adapter_puller_image: str = Field(
        "ghcr.io/oras-project/oras:v1.2.3",
        description="Image of the init containers that pull adapter artifacts (`oras pull`).",
    )
    node_weights_cache: str = Field(
        "/var/lib/kaito/weights",
        description=(
            "Directory on each GPU node where inference pods keep the weights they download "
            "(their HF_HOME, a hostPath): a pod that replaces another on the node (an adapter "
            "change, a restart) loads them from disk instead of downloading them again. Empty: "
            "a per-pod emptyDir (every new pod downloads; for namespaces that forbid hostPath)."
        ),
    )

    # --- provisioning -------------------------------------------------------------------
    node_auto_provisioning: bool = Field(
        True,
        description=(
            "Create karpenter.sh/v1 NodeClaims for GPU nodes. False = bring-your-own nodes: "
            "select existing nodes by the Workspace's labelSelector."
        ),
    )
    cloud_provider: Literal["azure", "aws", "kwok"] = Field(
        "azure", description="Which nodeClassRef the NodeClaims carry."
    )
    node_image_family: Literal["ubuntu", "azurelinux"] = Field(
        "ubuntu", description="Default kaito.sh/node-image-family annotation on NodeClaims."
    )
    nodeclaim_template: NodeClaimTemplate = Field(
        default_factory=NodeClaimTemplate,
        description=(
            "Per-install additions to every NodeClaim, as JSON (camelCase keys): nodeClassRef, "
            "labels, annotations, requirements, taints, startupTaints, requestGpus, "
            "diskResource, requests, expireAfter. Empty: the claim gpu-provisioner serves "
            "(KAITO's)."
        ),
    )

    # --- where things live --------------------------------------------------------------
    release_namespace: str = Field(
        "kaito-workspace",
        description="Namespace of the chart release (holds the default tuning templates).",
    )

    # --- admission webhook --------------------------------------------------------------
    webhook_enabled: bool = Field(True, description="Serve the validating admission webhook.")
    webhook_listen_address: str = Field("0.0.0.0", description="Address the webhook listens on.")
    webhook_port: int = Field(9443, ge=1, le=65535, description="Port the webhook listens on.")
    webhook_hosts: list[str] = Field(
        default_factory=lambda: ["kaito-workspace-webhook.kaito-workspace.svc"],
        description="DNS names / IPs the serving certificate covers (JSON list).",
    )
    webhook_config_name: str = Field(
        "validation.workspace.kaito.sh",
        description="ValidatingWebhookConfiguration whose caBundle the controller maintains.",
    )
    webhook_cert_dir: str = Field(
        "/tmp/kaito-webhook-certs", description="Where the serving cert files are written."
    )
    webhook_cert_secret: str | None = Field(
        None,
        description=(
            "Secret (in release_namespace) that persists the certificate across restarts; "
            "unset = generate a new one at every start."
        ),
    )
    webhook_cert_days: int = Field(365, ge=2, description="Serving certificate lifetime.")
    webhook_renew_before_days: int = Field(
        30, ge=1, description="Rotate the certificate this many days before it expires."
    )

    # --- timing and concurrency ---------------------------------------------------------
    workers: int = Field(16, ge=1, description="Workspaces reconciled concurrently.")
    resync_seconds: float = Field(
        60.0, gt=0, description="Every Workspace is reconciled at least this often."
    )
    not_ready_requeue_seconds: float = Field(
        5.0, gt=0, description="Re-check interval while something is not ready yet."
    )

    # --- high availability --------------------------------------------------------------
    leader_election: bool = Field(
        True,
        description=(
            "Elect one leader among the replicas through a coordination.k8s.io Lease in "
            "release_namespace; only the leader reconciles, every replica serves the webhook."
        ),
    )
    leader_election_lease_name: str = Field(
        "kaito-workspace",
        description="Name of the leader-election Lease (the chart: its release's full name).",
    )
    leader_election_lease_duration_seconds: float = Field(
        15.0, gt=0, description="How long a follower waits on an unrenewed lease before taking it."
    )
    leader_election_renew_deadline_seconds: float = Field(
        10.0, gt=0, description="How long the leader keeps trying to renew before it stops."
    )
    leader_election_retry_period_seconds: float = Field(
        2.0, gt=0, description="How often replicas try to acquire or renew the lease."
    )
    pod_name: str | None = Field(
        None,
        description=(
            "This replica's identity in the lease (the chart sets the pod name); "
            "unset: hostname and process id."
        ),
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")
    log_format: Literal["text", "json"] = Field("text")

    @model_validator(mode="after")
    def _election_timings_are_consistent(self) -> ControllerSettings:
        self.election_timings()  # raises with the rule spelled out
        return self

    def election_timings(self) -> ElectionTimings:
        return ElectionTimings(
            lease_duration=self.leader_election_lease_duration_seconds,
            renew_deadline=self.leader_election_renew_deadline_seconds,
            retry_period=self.leader_election_retry_period_seconds,
        )
