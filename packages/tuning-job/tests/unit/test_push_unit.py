"""Registry credentials from a dockerconfigjson file, and what may be pushed (no network)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from kaito_tuning.errors import RegistryAuthError, TuningError
from kaito_tuning.push import files_to_push, find_credentials, read_docker_config

SRC = Path("/mnt/registry/config.json")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("key", "registry"),
    [
        ("myacr.azurecr.io", "myacr.azurecr.io"),
        ("https://myacr.azurecr.io", "myacr.azurecr.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("localhost:5000", "127.0.0.1:5000"),
        ("127.0.0.1:5000", "localhost:5000"),
    ],
)
def test_finds_auth_entries_by_host(key: str, registry: str) -> None:
    config = {"auths": {key: {"auth": _b64("alice:pa:ss")}}}
    creds = find_credentials(config, registry, SRC)
    assert creds is not None
    assert (creds.username, creds.password, creds.source) == ("alice", "pa:ss", SRC)
    assert "pa:ss" not in repr(creds)


def test_username_password_entries() -> None:
    config = {"auths": {"r.io": {"username": "bob", "password": "pw"}}}
    creds = find_credentials(config, "r.io", SRC)
    assert creds is not None
    assert (creds.username, creds.password) == ("bob", "pw")


def test_other_registries_do_not_match() -> None:
    assert find_credentials({"auths": {"a.io": {"auth": _b64("u:p")}}}, "b.io", SRC) is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"auth": "!!!"}, "is not base64 of user:password"),
        ({"auth": _b64("nocolon")}, "has no ':'"),
    ],
)
def test_malformed_auth_entries(entry: dict[str, str], message: str) -> None:
    with pytest.raises(RegistryAuthError) as info:
        find_credentials({"auths": {"r.io": entry}}, "r.io", SRC)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "reading registry credentials"),
        ("not json", "not JSON"),
        (json.dumps({"r.io": {"auth": "x"}}), "no 'auths' map"),
    ],
)
def test_bad_docker_config_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RegistryAuthError) as info:
        read_docker_config(path)
    assert message in str(info.value)


def test_only_an_adapter_directory_is_pushed(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(TuningError, match=r"safetensors missing; nothing was pushed"):
        files_to_push(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"x")
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / ".hidden").write_text("")
    assert [p.name for p in files_to_push(tmp_path)] == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
