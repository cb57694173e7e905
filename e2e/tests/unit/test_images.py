"""The image catalog (pure): every image's recipe exists and names only images the catalog has,
selection by name or group in dependency order, which context files a Dockerfile copies, and a
cache key that changes with exactly the inputs of a build."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from kaito_e2e.imagebuild import load_pins, package_versions
from kaito_e2e.images import (
    GROUPS,
    LOCAL_PREFIX,
    ImageSpec,
    cache_key,
    catalog,
    context_sources,
    dockerfile_instructions,
    resolved_build_args,
    select,
)

ROOT = Path(__file__).resolve().parents[3]
PINS = {
    "DEBIAN_SUITE": "bookworm",
    "UV_VERSION": "0.13.9",
    "PAUSE_VERSION": "1",
    "IMAGE_REVISION": "1",
    "COREDNS_VERSION": "v1.15.0",
    "ORAS_VERSION": "v1.3.6",
}
VERSIONS = {
    "kaito-controller": "0.1.0",
    "gpu-provisioner": "0.2.0",
    "inference-server": "0.3.0",
    "tuning-job": "0.4.0",
}


@pytest.fixture
def images() -> dict[str, ImageSpec]:
    return catalog(PINS, VERSIONS)


def names(specs: list[ImageSpec]) -> list[str]:
    return [s.short for s in specs]


# --- the catalog --------------------------------------------------------------------


def test_the_repositorys_catalog_builds_from_its_own_pins() -> None:
    images = catalog(load_pins(), package_versions())
    for spec in images.values():
        assert spec.group in GROUPS, spec.short
        assert all(dep in images for dep in spec.depends_on), spec.short
        if spec.dockerfile is not None:
            assert (ROOT / spec.dockerfile).is_file(), spec.dockerfile
        if spec.staged is None:
            assert (ROOT / spec.context).is_dir(), spec.context
    assert images["debian"].dockerfile is None  # the root file system from mmdebstrap


def test_tags_come_from_pins_and_package_versions(images: dict[str, ImageSpec]) -> None:
    assert images["controller"].local_ref == "localhost/kaito-py/kaito-controller:0.1.0"
    assert images["provisioner"].tag == "0.2.0"
    assert images["inference"].tag == images["inference-cpu"].tag == "0.3.0"
    assert images["inference-cu12"].tag == "0.3.0"
    assert images["tuning"].tag == images["tuning-cu12"].tag == "0.4.0"
    assert images["coredns"].tag == "1.15.0"  # the v is dropped
    assert images["oras"].tag == "1.3.6"
    assert images["uv"].tag == "0.13.9"
    assert images["pause"].tag == "1"
    assert images["python"].tag == images["debian"].tag == "bookworm"
    assert (
        images["curl"].remote_ref("198.18.127.1:5000")
        == "198.18.127.1:5000/kaito-local/curl:bookworm"
    )


def test_product_images_are_kaito_py_and_built_on_the_local_bases(
    images: dict[str, ImageSpec],
) -> None:
    products = [s for s in images.values() if s.group == "product"]
    assert {s.short for s in products} == {
        "controller",
        "provisioner",
        "inference-cpu",
        "tuning",
        "inference",
        "inference-cu12",
        "tuning-cu12",
    }
    for spec in products:
        assert spec.repository.startswith("kaito-py/"), spec.short
        assert set(spec.depends_on) == {"python", "uv"}, spec.short
        assert spec.context == "."
    others = [s for s in images.values() if s.group != "product"]
    assert all(s.repository.startswith("kaito-local/") for s in others)


def test_staged_contexts(images: dict[str, ImageSpec]) -> None:
    assert images["pause"].staged == "pause"
    assert images["coredns"].staged == "tool:coredns"
    assert images["oras"].staged == "tool:oras"
    assert images["controller"].staged is None


# --- selection ----------------------------------------------------------------------


def assert_dependencies_first(specs: list[ImageSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        assert set(spec.depends_on) <= seen, f"{spec.short} before {spec.depends_on}"
        seen.add(spec.short)
    assert len(seen) == len(specs), "an image selected twice"


def test_one_image_brings_what_it_is_built_on(images: dict[str, ImageSpec]) -> None:
    assert names(select(["controller"], images)) == ["debian", "python", "uv", "controller"]
    assert names(select(["pause"], images)) == ["pause"]
    assert names(select(["curl", "oras"], images)) == ["debian", "curl", "oras"]


def test_all_is_every_image_but_the_bases_on_demand(images: dict[str, ImageSpec]) -> None:
    for selection in ([], ["all"]):
        specs = select(selection, images)
        assert_dependencies_first(specs)
        assert set(names(specs)) == set(images)  # the bases come in as dependencies
    assert names(select(["base"], images)) == ["debian", "python", "uv"]


@pytest.mark.parametrize("group", GROUPS)
def test_a_group_is_its_images_and_their_bases(images: dict[str, ImageSpec], group: str) -> None:
    specs = select([group], images)
    assert_dependencies_first(specs)
    assert {s.short for s in specs if s.group == group} == {
        s.short for s in images.values() if s.group == group
    }
    assert {s.group for s in specs} <= {group, "base"}


def test_repeats_are_selected_once(images: dict[str, ImageSpec]) -> None:
    specs = select(["controller", "product", "controller", "python"], images)
    assert_dependencies_first(specs)
    assert names(specs).count("python") == 1


def test_an_unknown_name_lists_the_choices(images: dict[str, ImageSpec]) -> None:
    with pytest.raises(KeyError, match=r"unknown image or group 'ctrl'.*controller.*product.*all"):
        select(["ctrl"], images)


def test_a_dependency_cycle_is_refused() -> None:
    a = ImageSpec("a", "x/a", "1", "tools", "a/Dockerfile", build_args={"B": "@b"})
    b = ImageSpec("b", "x/b", "1", "tools", "b/Dockerfile", build_args={"A": "@a"})
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        select(["a"], {"a": a, "b": b})


def test_build_args_name_local_images(images: dict[str, ImageSpec]) -> None:
    args = resolved_build_args(images["tuning"], images)
    assert args["BASE_IMAGE"] == f"{LOCAL_PREFIX}/kaito-local/python:bookworm"
    assert args["UV_IMAGE"] == f"{LOCAL_PREFIX}/kaito-local/uv:0.13.9"
    assert args["PYTHON"] == "python3"
    assert args["UV_CACHE_DIR"] == "/var/cache/uv-host"
    assert resolved_build_args(images["uv"], images)["UV_VERSION"] == "0.13.9"


# --- Dockerfile sources -------------------------------------------------------------


def test_context_sources_of_copy_and_add() -> None:
    dockerfile = """\
# syntax=docker/dockerfile:1
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE} AS uv
FROM ${BASE_IMAGE}
COPY pyproject.toml uv.lock ./
copy ./packages/a/src/ packages/a/src
COPY --chown=65532:65532 --chmod=0755 hack/entry.sh /entry.sh
COPY ["packages/b/README.md", "packages/b/pyproject.toml", "packages/b/"]
ADD files/data.tar /data/
COPY --from=uv /uv /usr/local/bin/uv
COPY --from=ghcr.io/org/image:1 /bin/tool /bin/tool
RUN --mount=type=bind,from=uv,source=/uv,target=/usr/local/bin/uv uv sync
COPY packages/c/src \\
     # a comment inside the instruction
     packages/c/extra \\
     packages/c/
COPY pyproject.toml /again/
COPY . /all
"""
    assert context_sources(dockerfile) == [
        "pyproject.toml",
        "uv.lock",
        "packages/a/src",
        "hack/entry.sh",
        "packages/b/README.md",
        "packages/b/pyproject.toml",
        "files/data.tar",
        "packages/c/src",
        "packages/c/extra",
        ".",
    ]


def test_dockerfile_instructions_join_continuations_and_drop_comments() -> None:
    text = '# top\n\nRUN a \\\n  # note\n  && b\nCOPY x \\\n  y/\nCMD ["z"] \\\n'
    lines = [" ".join(line.split()) for line in dockerfile_instructions(text)]
    assert lines == ["RUN a && b", "COPY x y/", 'CMD ["z"]']


@pytest.mark.parametrize(
    "dockerfile",
    sorted(
        {s.dockerfile for s in catalog(load_pins(), package_versions()).values() if s.dockerfile}
    ),
)
def test_every_catalog_dockerfile_copies_only_what_the_key_sees(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    # A bind mount from the build context would be read by the build but not hashed.
    for line in dockerfile_instructions(text):
        for word in line.split():
            if word.startswith("--mount=") and "type=bind" in word:
                assert "from=" in word, f"{dockerfile}: {line}"


def torch_stack_prefix(dockerfile: str) -> list[str]:
    """The instructions from the final stage's start through the torch-stack layer."""
    lines = dockerfile_instructions((ROOT / dockerfile).read_text())
    start = lines.index("FROM ${UV_IMAGE} AS uv")
    [end] = [i for i, line in enumerate(lines) if "--only-group torch-stack" in line]
    return lines[start : end + 1]


def test_cpu_inference_and_tuning_share_the_torch_stack_layers(
    images: dict[str, ImageSpec],
) -> None:
    """Same instructions on the same base with the same arguments: buildah (or docker) builds
    the ~5 GB torch layer once for both, the registry stores it once, a node pulls it once."""
    cpu, tuning = images["inference-cpu"], images["tuning"]
    assert cpu.dockerfile is not None and tuning.dockerfile is not None
    assert torch_stack_prefix(cpu.dockerfile) == torch_stack_prefix(tuning.dockerfile)
    assert cpu.build_args == tuning.build_args


# --- cache keys ---------------------------------------------------------------------


def key_of(spec: ImageSpec, **overrides: object) -> str:
    inputs: dict[str, object] = {
        "dockerfile": "FROM x\nCOPY a b\n",
        "dependency_keys": {"python": "k-python", "uv": "k-uv"},
        "inputs": [("a/one.py", "11"), ("a/two.py", "22")],
        **overrides,
    }
    return cache_key(spec, **inputs)  # type: ignore[arg-type]


def test_the_key_is_stable_and_ignores_input_order(images: dict[str, ImageSpec]) -> None:
    spec = images["controller"]
    key = key_of(spec)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key_of(spec) == key
    assert key_of(spec, inputs=[("a/two.py", "22"), ("a/one.py", "11")]) == key
    shuffled = replace(spec, build_args=dict(reversed(list(spec.build_args.items()))))
    assert key_of(shuffled) == key


@pytest.mark.parametrize(
    "change",
    [
        {"dockerfile": "FROM x\nCOPY a c\n"},
        {"dependency_keys": {"python": "k-python-2", "uv": "k-uv"}},
        {"inputs": [("a/one.py", "11"), ("a/two.py", "23")]},
        {"inputs": [("a/one.py", "11"), ("a/three.py", "22")]},
        {"inputs": [("a/one.py", "11")]},
    ],
)
def test_the_key_changes_with_each_input(images: dict[str, ImageSpec], change: dict) -> None:
    assert key_of(images["controller"], **change) != key_of(images["controller"])


def test_the_key_changes_with_the_recipe_tag_and_build_args(images: dict[str, ImageSpec]) -> None:
    spec = images["controller"]
    key = key_of(spec)
    assert key_of(replace(spec, tag="0.1.1")) != key
    assert key_of(replace(spec, build_args={**spec.build_args, "X": "1"})) != key
    assert key_of(replace(spec, recipe={"IMAGE_REVISION": "2"})) != key
    bumped = catalog({**PINS, "IMAGE_REVISION": "2"}, VERSIONS)
    assert cache_key(bumped["curl"], dockerfile="", dependency_keys={"debian": "d"}, inputs=[]) != (
        cache_key(images["curl"], dockerfile="", dependency_keys={"debian": "d"}, inputs=[])
    )


def test_the_key_needs_the_keys_of_the_bases(images: dict[str, ImageSpec]) -> None:
    with pytest.raises(
        ValueError, match=r"controller: no cache key for its base image\(s\) \['uv'\]"
    ):
        key_of(images["controller"], dependency_keys={"python": "k"})
