"""The controller's and the presets' copy of the config-file keys is this server's own list."""

from __future__ import annotations

from kaito_inference.config import ServerConfig
from kaito_presets.server_config_keys import SERVER_CONFIG_KEYS


def test_generated_keys_are_the_settings_model_fields() -> None:
    # Stale: run `make generate` (hack/gen_server_config_keys.py).
    assert set(ServerConfig.model_fields) == SERVER_CONFIG_KEYS
