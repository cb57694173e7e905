"""Which images the project builds, from what, and when a build can be skipped.

Why: no public registry is reachable from our machines, so every image a pod runs (the five
package images, and pause, CoreDNS and curl for the local cluster) is built here, on bases made
from Debian packages and PyPI. The catalog below says, for each image, its Dockerfile, its tag,
and which other local images it is built on (its ``@name`` build arguments). A build is skipped
when the image's *cache key* is unchanged: the key hashes the recipe (Dockerfile, arguments, pins),
the keys of the images it is built on, and the content of every file its Dockerfile copies from
the build context. Everything here is pure; :mod:`kaito_e2e.imagebuild` does the I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

LOCAL_PREFIX = "localhost"
BUILD_KEY_LABEL = "sh.kaito.build-key"
"""Image label that records the cache key the image was built from."""

HOST_UV_CACHE_MOUNT = "/var/cache/uv-host"
"""Where package image builds see the build machine's uv cache (a bind mount of buildah's)."""

# Staged contexts: a temporary directory holding files prepared by the builder: the pause
# program compiled from source, or a binary hack/build-tools.sh built (``tool:<name>``).
STAGED_PAUSE = "pause"
STAGED_TOOL = "tool:"
STAGED_TINY_MODEL = "tiny-model"


@dataclass(frozen=True)
class ImageSpec:
    """One image: how to build it and what its name is."""

    short: str
    """The name on the command line (``controller``, ``pause``, ...)."""
    repository: str
    """Repository path without a registry, e.g. ``kaito-py/kaito-controller``."""
    tag: str
    group: str
    """``base`` (built on demand only), ``infra`` (the cluster itself), ``tools``, ``product``."""
    dockerfile: str | None
    """Dockerfile relative to the repository; None for the Debian root file system."""
    context: str = "."
    """Build context relative to the repository, or a ``staged:<kind>`` directory."""
    build_args: Mapping[str, str] = field(default_factory=dict[str, str])
    """Build arguments; a value ``@short`` is replaced by that image's local reference."""
    recipe: Mapping[str, str] = field(default_factory=dict[str, str])
    """Further inputs of the cache key (pins, compiler versions, mirror URLs)."""

    @property
    def local_ref(self) -> str:
        return f"{LOCAL_PREFIX}/{self.repository}:{self.tag}"

    def remote_ref(self, registry: str) -> str:
        return f"{registry}/{self.repository}:{self.tag}"

    @property
    def depends_on(self) -> tuple[str, ...]:
        return tuple(v[1:] for v in self.build_args.values() if v.startswith("@"))

    @property
    def staged(self) -> str | None:
        return self.context.removeprefix("staged:") if self.context.startswith("staged:") else None


GROUPS = ("base", "infra", "tools", "product")


def catalog(pins: Mapping[str, str], versions: Mapping[str, str]) -> dict[str, ImageSpec]:
    """Every image, by short name.

    Args:
        pins: ``hack/images/images.env`` merged with ``hack/versions.env`` (DEBIAN_SUITE,
            UV_VERSION, PAUSE_VERSION, IMAGE_REVISION, COREDNS_VERSION, ORAS_VERSION).
        versions: package directory name -> version from its pyproject (the product tags).
    """
    suite = pins["DEBIAN_SUITE"]
    revision = {"IMAGE_REVISION": pins["IMAGE_REVISION"]}
    local = {"BASE_IMAGE": "@python", "UV_IMAGE": "@uv", "UV_CACHE_DIR": HOST_UV_CACHE_MOUNT}
    # The Debian base's interpreter. The CPU inference and tuning images get the same arguments:
    # their Dockerfiles share the torch-stack layers, which only then are built once.
    torch_local = {**local, "PYTHON": "python3"}
    specs = [
        ImageSpec("debian", "kaito-local/debian", suite, "base", None,
                  recipe={**revision, "DEBIAN_SUITE": suite}),
        ImageSpec("python", "kaito-local/python", suite, "base", "hack/images/python/Dockerfile",
                  "hack/images/python", {"DEBIAN_IMAGE": "@debian"}, revision),
        ImageSpec("uv", "kaito-local/uv", pins["UV_VERSION"], "base", "hack/images/uv/Dockerfile",
                  "hack/images/uv", {"PYTHON_IMAGE": "@python", "UV_VERSION": pins["UV_VERSION"]},
                  revision),
        ImageSpec("pause", "kaito-local/pause", pins["PAUSE_VERSION"], "infra",
                  "hack/images/pause/Dockerfile", f"staged:{STAGED_PAUSE}", recipe=revision),
        ImageSpec("coredns", "kaito-local/coredns", pins["COREDNS_VERSION"].removeprefix("v"),
                  "infra", "hack/images/coredns/Dockerfile", f"staged:{STAGED_TOOL}coredns",
                  recipe={**revision, "COREDNS_VERSION": pins["COREDNS_VERSION"]}),
        ImageSpec("oras", "kaito-local/oras", pins["ORAS_VERSION"].removeprefix("v"), "tools",
                  "hack/images/oras/Dockerfile", f"staged:{STAGED_TOOL}oras",
                  {"DEBIAN_IMAGE": "@debian"}, {**revision, "ORAS_VERSION": pins["ORAS_VERSION"]}),
        ImageSpec("tiny-model", "kaito-local/tiny-model", "1", "tools",
                  "hack/images/tiny-model/Dockerfile", f"staged:{STAGED_TINY_MODEL}",
                  {"DEBIAN_IMAGE": "@debian"}, revision),
        ImageSpec("curl", "kaito-local/curl", suite, "tools", "hack/images/curl/Dockerfile",
                  "hack/images/curl", {"DEBIAN_IMAGE": "@debian"}, revision),
        ImageSpec("controller", "kaito-py/kaito-controller", versions["kaito-controller"],
                  "product", "packages/kaito-controller/Dockerfile", build_args=local),
        ImageSpec("provisioner", "kaito-py/gpu-provisioner", versions["gpu-provisioner"],
                  "product", "packages/gpu-provisioner/Dockerfile", build_args=local),
        ImageSpec("inference-cpu", "kaito-py/kaito-inference-cpu", versions["inference-server"],
                  "product", "packages/inference-server/Dockerfile.cpu", build_args=torch_local),
        ImageSpec("tuning", "kaito-py/kaito-tuning", versions["tuning-job"], "product",
                  "packages/tuning-job/Dockerfile", build_args=torch_local),
        ImageSpec("inference", "kaito-py/kaito-inference", versions["inference-server"],
                  "product", "packages/inference-server/Dockerfile", build_args=torch_local),
        # CUDA 12 wheels for the GPUs CUDA 13 dropped (V100): docs/adr/0002.
        ImageSpec("inference-cu12", "kaito-py/kaito-inference-cu12",
                  versions["inference-server"], "product", "runtimes/cu12/Dockerfile.inference",
                  build_args=local),
        ImageSpec("tuning-cu12", "kaito-py/kaito-tuning-cu12", versions["tuning-job"], "product",
                  "runtimes/cu12/Dockerfile.tuning", build_args=local),
    ]  # fmt: skip
    return {s.short: s for s in specs}


def select(names: Sequence[str], images: Mapping[str, ImageSpec]) -> list[ImageSpec]:
    """The images named (short names or group names; ``all`` = every non-base image) plus
    everything they are built on, each once, dependencies first.

    Raises:
        KeyError: a name that is neither an image nor a group, with the valid choices.
    """
    wanted: list[str] = []
    for name in names or ["all"]:
        if name == "all":
            wanted += [s.short for s in images.values() if s.group != "base"]
        elif name in GROUPS:
            wanted += [s.short for s in images.values() if s.group == name]
        elif name in images:
            wanted.append(name)
        else:
            choices = ", ".join([*images, *GROUPS, "all"])
            raise KeyError(f"unknown image or group {name!r}; choose from: {choices}")
    ordered: list[ImageSpec] = []

    def visit(short: str, path: tuple[str, ...]) -> None:
        if short in path:
            raise ValueError(f"image dependency cycle: {' -> '.join((*path, short))}")
        if any(s.short == short for s in ordered):
            return
        spec = images[short]
        for dep in spec.depends_on:
            visit(dep, (*path, short))
        ordered.append(spec)

    for short in wanted:
        visit(short, ())
    return ordered


_INSTRUCTION = re.compile(r"^\s*(COPY|ADD)\s+(.*)$", re.IGNORECASE)


def dockerfile_instructions(text: str) -> list[str]:
    """Logical lines of a Dockerfile: continuations joined, comments and blanks dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def context_sources(dockerfile: str) -> list[str]:
    """Paths (relative to the build context) that the Dockerfile's COPY/ADD take from the context.

    ``COPY --from=...`` copies from another stage or image and is left out; so is a
    ``RUN --mount=type=bind,from=...``. Sources are returned in order, without duplicates.
    """
    sources: list[str] = []
    for line in dockerfile_instructions(dockerfile):
        match = _INSTRUCTION.match(line)
        if match is None:
            continue
        rest = match.group(2).strip()
        words = [str(w) for w in json.loads(rest)] if rest.startswith("[") else shlex.split(rest)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        for source in paths[:-1]:
            cleaned = source.removeprefix("./").rstrip("/") or "."
            if cleaned not in sources:
                sources.append(cleaned)
    return sources


def cache_key(
    spec: ImageSpec,
    *,
    dockerfile: str,
    dependency_keys: Mapping[str, str],
    inputs: Iterable[tuple[str, str]],
) -> str:
    """The image's cache key (hex sha256).

    Args:
        spec: the image.
        dockerfile: the Dockerfile's text ("" for the Debian root file system).
        dependency_keys: cache key of every image in ``spec.depends_on``.
        inputs: ``(path, sha256)`` of every context file the build reads.
    """
    missing = [d for d in spec.depends_on if d not in dependency_keys]
    if missing:
        raise ValueError(f"{spec.short}: no cache key for its base image(s) {missing}")
    digest = hashlib.sha256()
    header = {
        "repository": spec.repository,
        "tag": spec.tag,
        "build_args": dict(sorted(spec.build_args.items())),
        "recipe": dict(sorted(spec.recipe.items())),
        "dependencies": {d: dependency_keys[d] for d in sorted(spec.depends_on)},
        "dockerfile": dockerfile,
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for path, sha in sorted(inputs):
        digest.update(f"\0{path}\0{sha}".encode())
    return digest.hexdigest()


def resolved_build_args(spec: ImageSpec, images: Mapping[str, ImageSpec]) -> dict[str, str]:
    """Build arguments with ``@short`` replaced by that image's local reference."""
    return {
        key: images[value[1:]].local_ref if value.startswith("@") else value
        for key, value in spec.build_args.items()
    }
