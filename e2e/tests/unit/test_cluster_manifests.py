"""hack/manifests/cluster.yaml renders to valid objects whatever random values it is given."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[3] / "hack" / "manifests" / "cluster.yaml"


def test_an_all_digit_bootstrap_token_stays_a_string() -> None:
    # local-cluster.sh fills these with `openssl rand -hex`: about 6% of ids are all digits.
    text = (
        MANIFEST.read_text()
        .replace("${BOOTSTRAP_TOKEN_ID}", "929269")
        .replace("${BOOTSTRAP_TOKEN_SECRET}", "0123456789012345")
        .replace("${DNS_IP}", "198.18.128.10")
        .replace("${COREDNS_IMAGE}", "registry.local/coredns:1")
    )
    (secret,) = [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "Secret"]
    assert secret["stringData"]["token-id"] == "929269"
    assert secret["stringData"]["token-secret"] == "0123456789012345"
