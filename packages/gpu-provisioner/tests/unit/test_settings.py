"""Settings from KAITO_PROVISIONER_* (nested azure with __) and errors naming the field."""

from __future__ import annotations

import pytest
from kaito_gpu_provisioner.settings import Settings
from pydantic import ValidationError


def test_env_with_nested_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAITO_PROVISIONER_PROVIDER", "AZURE")
    monkeypatch.setenv("KAITO_PROVISIONER_AZURE__SUBSCRIPTION_ID", "sub")
    monkeypatch.setenv("KAITO_PROVISIONER_AZURE__RESOURCE_GROUP", "rg")
    monkeypatch.setenv("KAITO_PROVISIONER_AZURE__CLUSTER_NAME", "aks-1")
    monkeypatch.setenv("KAITO_PROVISIONER_AZURE__POLLING_INTERVAL_SECONDS", "0.5")
    settings = Settings()
    assert settings.provider == "azure"
    assert settings.azure.cluster_name == "aks-1"
    assert settings.azure.polling_interval_seconds == 0.5


def test_azure_provider_requires_cluster_coordinates() -> None:
    with pytest.raises(ValidationError, match=r"azure\.subscription_id"):
        Settings(provider="azure")


def test_static_token_requires_a_token() -> None:
    with pytest.raises(ValidationError, match=r"azure\.static_token"):
        Settings(azure={"credential": "static-token"})  # type: ignore[arg-type]


def test_kwok_is_the_default_and_needs_nothing() -> None:
    assert Settings().provider == "kwok"
