"""Controller configuration, read once from ``KAITO_CONTROLLER_*`` environment variables.

Why: one typed place for every knob (images, provisioning mode, webhook, timings). ``main``
builds it once and passes it down; nothing else in the controller reads the environment. The
chart renders these variables from its values (``templates/_env.tpl``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")
    log_format: Literal["text", "json"] = Field("text")
