"""Push to and pull from a real registry with auth on: digests, files, and credential failures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from kaito_tuning.cli import main as tune_main
from kaito_tuning.errors import RegistryAuthError, RegistryError
from kaito_tuning.fetch import main as fetch_main
from kaito_tuning.push import (
    ADAPTER_CONFIG_MEDIA_TYPE,
    MODEL_NAME_ANNOTATION,
    pull_directory,
    push_directory,
)

from ..conftest import chat_rows, write_parquet
from .conftest import PASSWORD, USER, Registry

pytestmark = pytest.mark.integration


def _adapter_dir(root: Path, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "adapter_config.json").write_text(f'{{"r": 8, "seed": {seed}}}')
    (root / "adapter_model.safetensors").write_bytes(
        hashlib.sha256(str(seed).encode()).digest() * 4096
    )
    (root / "tokenizer.json").write_text('{"model": {}}')
    (root / "metrics.json").write_text('{"final_loss": 1.0}')
    return root


def _manifest(registry: Registry, repo: str, tag: str) -> httpx.Response:
    return httpx.get(
        f"http://{registry.host}/v2/{repo}/manifests/{tag}",
        auth=(USER, PASSWORD),
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )


def test_push_then_pull_gives_back_the_same_files_and_digests(
    registry: Registry, tmp_path: Path
) -> None:
    src = _adapter_dir(tmp_path / "adapter")
    ref = f"{registry.host}/adapters/tiny:0.1"
    result = push_directory(
        src,
        ref,
        docker_config=registry.good_config,
        plain_http=True,
        annotations={MODEL_NAME_ANNOTATION: "phi-3-mini-4k-instruct"},
    )
    assert set(result.layers) == {p.name for p in src.iterdir()}
    for name, digest in result.layers.items():
        assert digest == "sha256:" + hashlib.sha256((src / name).read_bytes()).hexdigest()

    # What the registry itself serves (checked without oras): the digest, annotations, config.
    manifest = _manifest(registry, "adapters/tiny", "0.1")
    assert manifest.status_code == 200
    assert "sha256:" + hashlib.sha256(manifest.content).hexdigest() == result.digest
    body = manifest.json()
    assert body["annotations"][MODEL_NAME_ANNOTATION] == "phi-3-mini-4k-instruct"
    assert body["config"]["mediaType"] == ADAPTER_CONFIG_MEDIA_TYPE

    pulled = pull_directory(
        ref, tmp_path / "pulled", docker_config=registry.good_config, plain_http=True
    )
    assert sorted(p.name for p in pulled) == sorted(p.name for p in src.iterdir())
    for path in pulled:
        assert path.read_bytes() == (src / path.name).read_bytes()


def test_wrong_password_fails_clearly_and_pushes_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    src = _adapter_dir(tmp_path / "adapter", seed=1)
    ref = f"{registry.host}/adapters/denied:0.1"
    with pytest.raises(RegistryAuthError) as info:
        push_directory(src, ref, docker_config=registry.bad_config, plain_http=True)
    text = str(info.value)
    assert f"registry {registry.host} rejected the request as user '{USER}'" in text
    assert str(registry.bad_config) in text
    assert "imagePushSecret" in text
    assert _manifest(registry, "adapters/denied", "0.1").status_code == 404


def test_no_credentials_for_the_registry(registry: Registry, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"auths": {"elsewhere.io": {"auth": "dTpw"}}}')
    with pytest.raises(RegistryAuthError, match="anonymously"):
        push_directory(
            _adapter_dir(tmp_path / "a"),
            f"{registry.host}/x/y:1",
            docker_config=other,
            plain_http=True,
        )


def test_unreachable_registry_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"cannot reach registry 127\.0\.0\.1:9"):
        push_directory(
            _adapter_dir(tmp_path / "a"), "127.0.0.1:9/x/y:1", docker_config=None, plain_http=True
        )


def test_pull_of_a_missing_tag_fails(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"pulling .*/adapters/none:9: not found in registry"):
        pull_directory(
            f"{registry.host}/adapters/none:9",
            tmp_path,
            docker_config=registry.good_config,
            plain_http=True,
        )


def test_push_command_exit_codes_and_termination_message(
    registry: Registry, tmp_path: Path
) -> None:
    src = _adapter_dir(tmp_path / "adapter", seed=2)
    log = tmp_path / "termination-log"
    common = ["--dir", str(src), "--plain-http", "--termination-log", str(log)]
    ok = tune_main(
        [
            "push",
            *common,
            "--image",
            f"{registry.host}/adapters/cli:1",
            "--docker-config",
            str(registry.good_config),
        ]
    )
    assert ok == 0
    assert not log.exists()
    bad = tune_main(
        [
            "push",
            *common,
            "--image",
            f"{registry.host}/adapters/cli:2",
            "--docker-config",
            str(registry.bad_config),
        ]
    )
    assert bad == RegistryAuthError.exit_code
    assert log.read_text().startswith(f"RegistryAuthFailed: pushing {src}")


def test_fetch_input_pulls_a_dataset_image(registry: Registry, tmp_path: Path) -> None:
    data = tmp_path / "dataset"
    data.mkdir()
    write_parquet(data / "train.parquet", chat_rows(1))
    # A dataset image is any artifact of data files; reuse the pusher with stub adapter files.
    (data / "adapter_config.json").write_text("{}")
    (data / "adapter_model.safetensors").write_bytes(b"0")
    ref = f"{registry.host}/datasets/chat:1"
    push_directory(data, ref, docker_config=registry.good_config, plain_http=True)
    dest = tmp_path / "mnt-data"
    code = fetch_main(
        [
            "--image",
            ref,
            "--dest",
            str(dest),
            "--docker-config",
            str(registry.good_config),
            "--plain-http",
            "--termination-log",
            str(tmp_path / "t"),
        ]
    )
    assert code == 0
    assert (dest / "train.parquet").read_bytes() == (data / "train.parquet").read_bytes()


def test_a_push_the_registry_does_not_hold_in_full_is_a_failure(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kaito_tuning.push as push

    real = push._remote_layers

    def lose_a_layer(client: object, doing: str) -> dict[str, str]:
        layers = real(client, doing)  # type: ignore[arg-type]
        layers.pop("adapter_model.safetensors")
        return layers

    monkeypatch.setattr(push, "_remote_layers", lose_a_layer)
    log = tmp_path / "t"
    code = tune_main(
        [
            "push",
            "--dir",
            str(_adapter_dir(tmp_path / "a", seed=3)),
            "--image",
            f"{registry.host}/adapters/partial:1",
            "--docker-config",
            str(registry.good_config),
            "--plain-http",
            "--termination-log",
            str(log),
        ]
    )
    assert code == RegistryError.exit_code
    assert "the registry holds different content than was sent" in log.read_text()


def test_bad_push_credentials_fail_before_any_training(registry: Registry, tmp_path: Path) -> None:
    log = tmp_path / "t"
    code = tune_main(
        [
            "--model",
            str(tmp_path / "no-model-here"),  # training would fail with ModelLoadFailed (8)
            "--data",
            str(tmp_path),
            "--output",
            str(tmp_path / "out"),
            "--push-image",
            f"{registry.host}/adapters/early:1",
            "--docker-config",
            str(registry.bad_config),
            "--plain-http",
            "--termination-log",
            str(log),
        ]
    )
    assert code == RegistryAuthError.exit_code
    assert "checking push access to" in log.read_text()
    assert "before training" in log.read_text()
