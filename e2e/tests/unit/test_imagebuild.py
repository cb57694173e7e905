"""The image builder's cheap parts (buildah never runs): which context files a build reads, as
git sees them; a cache key that changes when a copied file changes and not when any other does;
staged contexts; the pins and package versions; the CLI's read-only commands."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from pathlib import Path

import pytest
from kaito_e2e import imagebuild
from kaito_e2e.cluster import read_versions
from kaito_e2e.imagebuild import (
    PACKAGE_DIRS,
    Buildah,
    Builder,
    BuildError,
    context_files,
    load_pins,
    package_versions,
    populate_staged,
    run,
    sha256_file,
    staged_inputs,
)
from kaito_e2e.images import ImageSpec, cache_key, catalog

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY pyproject.toml ./
COPY pkg/src pkg/src
"""
APP = ImageSpec("app", "kaito-py/app", "1", "product", "Dockerfile", ".")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    files = {
        "Dockerfile": DOCKERFILE,
        "pyproject.toml": "[project]\n",
        "pkg/src/mod.py": "x = 1\n",
        "pkg/src/sub/deep.py": "y = 2\n",
        "pkg/README.md": "not copied\n",
        "docs/guide.md": "not copied\n",
        ".gitignore": "*.log\npkg/src/generated/\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "init")
    return root


def relative(root: Path, files: list[Path]) -> list[str]:
    return [str(p.relative_to(root)) for p in files]


# --- context files ------------------------------------------------------------------


def test_context_files_are_what_git_sees_under_the_sources(repo: Path) -> None:
    (repo / "pkg/src/new.py").write_text("untracked, not ignored\n")
    (repo / "pkg/src/debug.log").write_text("ignored\n")
    (repo / "pkg/src/generated").mkdir()
    (repo / "pkg/src/generated/big.bin").write_text("ignored\n")
    (repo / "pkg/src/sub/deep.py").unlink()  # tracked but deleted: not in the context
    files = context_files(repo, ".", ["pyproject.toml", "pkg/src"])
    assert relative(repo, files) == ["pkg/src/mod.py", "pkg/src/new.py", "pyproject.toml"]
    assert context_files(repo, ".", []) == []


def test_context_files_are_relative_to_the_context(repo: Path) -> None:
    files = context_files(repo, "pkg", ["src"])
    assert relative(repo, files) == ["pkg/src/mod.py", "pkg/src/sub/deep.py"]


def test_context_files_outside_git_walk_the_tree(tmp_path: Path) -> None:
    (tmp_path / "src/__pycache__").mkdir(parents=True)
    (tmp_path / "src/a.py").write_text("a")
    (tmp_path / "src/__pycache__/a.cpython-311.pyc").write_text("cache")
    (tmp_path / "top.toml").write_text("t")
    files = context_files(tmp_path, ".", ["src", "top.toml"])
    assert relative(tmp_path, files) == ["src/a.py", "top.toml"]


# --- cache keys from the tree -------------------------------------------------------


def key(repo: Path, spec: ImageSpec = APP) -> str:
    builder = Builder(Buildah(repo / ".cache"), {spec.short: spec}, root=repo)
    text, inputs = builder.key_inputs(spec)
    return cache_key(spec, dockerfile=text, dependency_keys={}, inputs=inputs)


def test_key_inputs_are_the_dockerfile_and_the_copied_files(repo: Path) -> None:
    builder = Builder(Buildah(repo / ".cache"), {"app": APP}, root=repo)
    text, inputs = builder.key_inputs(APP)
    assert text == DOCKERFILE
    assert dict(inputs) == {
        "pyproject.toml": sha256_file(repo / "pyproject.toml"),
        "pkg/src/mod.py": hashlib.sha256(b"x = 1\n").hexdigest(),
        "pkg/src/sub/deep.py": hashlib.sha256(b"y = 2\n").hexdigest(),
    }


@pytest.mark.parametrize(
    ("path", "changes_key"),
    [
        ("pkg/src/mod.py", True),
        ("pkg/src/sub/deep.py", True),
        ("pkg/src/added.py", True),  # a new file in a copied directory
        ("pyproject.toml", True),
        ("Dockerfile", True),
        ("pkg/README.md", False),
        ("docs/guide.md", False),
        ("docs/new.md", False),
        ("pkg/src/trace.log", False),  # ignored: not in the context
    ],
)
def test_the_key_changes_with_copied_files_only(repo: Path, path: str, changes_key: bool) -> None:
    before = key(repo)
    target = repo / path
    target.write_text((target.read_text() if target.exists() else "") + "# changed\n")
    assert (key(repo) != before) is changes_key


def test_a_staged_image_hashes_only_its_dockerfile_here(repo: Path) -> None:
    spec = ImageSpec("tool", "kaito-local/tool", "1", "infra", "Dockerfile", "staged:tool:x")
    builder = Builder(Buildah(repo / ".cache"), {"tool": spec}, root=repo)
    assert builder.key_inputs(spec) == (DOCKERFILE, [])  # staged_inputs adds the rest


def test_the_root_file_system_hashes_the_extra_cas(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cas = tmp_path / "cas"
    cas.mkdir()
    (cas / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (cas / "readme.txt").write_text("not a certificate\n")
    monkeypatch.setenv("KAITO_EXTRA_CA_DIR", str(cas))
    spec = ImageSpec("debian", "kaito-local/debian", "bookworm", "base", None)
    builder = Builder(Buildah(repo / ".cache"), {"debian": spec}, root=repo)
    assert builder.key_inputs(spec) == ("", [("ca/proxy.crt", sha256_file(cas / "proxy.crt"))])


def test_the_repositorys_product_images_hash_their_sources() -> None:
    images = catalog(load_pins(), package_versions())
    builder = Builder(Buildah(Path("/nonexistent")), images)
    text, inputs = builder.key_inputs(images["provisioner"])
    paths = {path for path, _ in inputs}
    assert "uv.lock" in paths
    assert "packages/gpu-provisioner/src/kaito_gpu_provisioner/local/provisioner.py" in paths
    assert not any(p.startswith("packages/inference-server/src/") for p in paths)
    assert not any("__pycache__" in p for p in paths)
    assert "COPY packages/gpu-provisioner/src" in text


# --- staged contexts ----------------------------------------------------------------


def test_a_tool_context_holds_the_built_binary(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "oras").write_bytes(b"\x7fELF fake")
    inputs = staged_inputs("tool:oras", tools)
    assert inputs == [("oras", hashlib.sha256(b"\x7fELF fake").hexdigest())]
    directory = tmp_path / "context"
    directory.mkdir()
    populate_staged("tool:oras", directory, tools)
    assert (directory / "oras").read_bytes() == b"\x7fELF fake"


def test_the_tiny_model_key_follows_its_builder_and_the_lock(tmp_path: Path) -> None:
    inputs = dict(staged_inputs("tiny-model", tmp_path))
    assert set(inputs) == {"tiny_model.py", "uv.lock"}
    assert inputs["uv.lock"] == sha256_file(ROOT / "uv.lock")


def test_a_missing_tool_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"coredns is missing: run hack/build-tools\.sh"):
        staged_inputs("tool:coredns", tmp_path)
    with pytest.raises(ValueError, match="unknown staged context 'nope'"):
        staged_inputs("nope", tmp_path)


# --- pins, versions, commands -------------------------------------------------------


def test_pins_are_images_env_over_versions_env() -> None:
    pins = load_pins()
    versions = read_versions(ROOT / "hack/versions.env")
    images_env = read_versions(ROOT / "hack/images/images.env")
    assert pins == {**versions, **images_env}
    for needed in ("DEBIAN_SUITE", "UV_VERSION", "PAUSE_VERSION", "IMAGE_REVISION"):
        assert needed in images_env
    for needed in ("COREDNS_VERSION", "ORAS_VERSION"):
        assert needed in pins
    catalog(pins, package_versions())  # every pin the catalog reads is there


def test_package_versions_are_the_pyproject_versions(tmp_path: Path) -> None:
    expected = {}
    for name in PACKAGE_DIRS:
        with (ROOT / "packages" / name / "pyproject.toml").open("rb") as f:
            expected[name] = tomllib.load(f)["project"]["version"]
    assert package_versions() == expected
    for i, name in enumerate(PACKAGE_DIRS):
        (tmp_path / "packages" / name).mkdir(parents=True)
        (tmp_path / "packages" / name / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\nversion = "9.{i}"\n'
        )
    assert package_versions(tmp_path) == {n: f"9.{i}" for i, n in enumerate(PACKAGE_DIRS)}


def test_run_raises_with_the_output_tail() -> None:
    assert run(["sh", "-c", "echo hi"], what="echo", capture=True) == "hi\n"
    with pytest.raises(
        BuildError,
        match=r"failing step: `sh -c echo out; echo err >&2; exit 3 \.\.\.` exited 3:\nout\nerr",
    ):
        run(["sh", "-c", "echo out; echo err >&2; exit 3"], what="failing step")


def test_tag_and_list_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert imagebuild.main(["tag", "controller"]) == 0
    assert capsys.readouterr().out.strip() == package_versions()["kaito-controller"]
    assert imagebuild.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "localhost/kaito-py/gpu-provisioner:" in listing
    assert "(mmdebstrap)" in listing
    with pytest.raises(SystemExit):
        imagebuild.main(["tag", "nope"])
    assert "unknown image 'nope'" in capsys.readouterr().err
