"""Build, cache and push the project's images with buildah; no Docker engine, no public registry.

Why: our machines have no Docker and reach no public registry, yet pods need real images. This
builds the catalog of :mod:`kaito_e2e.images` with buildah (overlay storage, chroot isolation):
a Debian root file system from ``mmdebstrap`` (Debian packages), a Python base on it, uv from its
PyPI wheel, then the package images from their own Dockerfiles with those bases passed as build
arguments. An image whose cache key is unchanged is not rebuilt, and not pushed again when the
registry already holds it with the same key (read from the pushed image's labels), so an
unchanged tree takes seconds. Layers are pushed zstd-compressed at a low level: gzip would cost
minutes per torch image on two cores, uncompressed layers double the disk every node pulls to.

CLI (what ``hack/build-images.sh`` runs)::

    python -m kaito_e2e.imagebuild build [NAME|GROUP ...] [--push] [--registry HOST:PORT]
    python -m kaito_e2e.imagebuild tag NAME        # the tag an image gets
    python -m kaito_e2e.imagebuild list            # the catalog

With ``--builder docker`` (where a Docker engine exists) the product images are built with their
Dockerfiles' public default bases instead, and ``--load-kind CLUSTER`` loads them into kind.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kaito_e2e.cluster import HACK_DIR, REPO_ROOT, read_versions
from kaito_e2e.images import (
    BUILD_KEY_LABEL,
    HOST_UV_CACHE_MOUNT,
    STAGED_PAUSE,
    STAGED_TINY_MODEL,
    STAGED_TOOL,
    ImageSpec,
    cache_key,
    catalog,
    context_sources,
    resolved_build_args,
    select,
)

PACKAGE_DIRS = ("kaito-controller", "gpu-provisioner", "inference-server", "tuning-job")
DEBIAN_PACKAGES = ("ca-certificates", "passwd")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(RuntimeError):
    """A build step failed; the message names the image and the command's output tail."""


def log(message: str) -> None:
    print(f"[images {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("KAITO_IMAGES_CACHE", Path.home() / ".cache/kaito-images"))


def host_uv_cache() -> Path:
    """This machine's uv cache (what `make install` filled), shared with image builds."""
    return Path(os.environ.get("UV_CACHE_DIR", Path.home() / ".cache/uv"))


def load_pins() -> dict[str, str]:
    """``hack/images/images.env`` over ``hack/versions.env`` (COREDNS_VERSION lives there)."""
    return {
        **read_versions(HACK_DIR / "versions.env"),
        **read_versions(HACK_DIR / "images/images.env"),
    }


def package_versions(root: Path = REPO_ROOT) -> dict[str, str]:
    out = {}
    for name in PACKAGE_DIRS:
        with (root / "packages" / name / "pyproject.toml").open("rb") as f:
            out[name] = str(tomllib.load(f)["project"]["version"])
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run(argv: Sequence[str], *, what: str, capture: bool = False, **kwargs: object) -> str:
    """Run a command; raise BuildError with the tail of its output when it fails."""
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise BuildError(f"{what}: `{' '.join(argv[:3])} ...` exited {result.returncode}:\n{tail}")
    return result.stdout if capture else ""


def context_files(root: Path, context: str, sources: Sequence[str]) -> list[Path]:
    """Files under the context's COPY sources, as git sees them (tracked or untracked, not
    ignored: the same set ``.dockerignore`` lets through)."""
    paths = [str(Path(context) / s) for s in sources]
    if not paths:
        return []
    result = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z", "--", *paths],
        capture_output=True,
        check=False,
    )
    if result.returncode == 0:
        names = sorted({n for n in result.stdout.decode().split("\0") if n})
        return [root / n for n in names if (root / n).is_file()]
    files: list[Path] = []  # not a git checkout: walk, skipping caches
    for path in paths:
        base = root / path
        candidates = [base] if base.is_file() else sorted(base.rglob("*"))
        files += [p for p in candidates if p.is_file() and "__pycache__" not in p.parts]
    return files


@dataclass
class Buildah:
    """buildah with this project's own storage under the image cache."""

    root: Path

    def _base(self) -> list[str]:
        return [
            "buildah",
            "--storage-driver",
            "overlay",
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
        ]

    def label(self, ref: str, name: str) -> str | None:
        result = subprocess.run(
            [*self._base(), "inspect", "--type", "image", ref],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            return None
        config = json.loads(result.stdout).get("OCIv1", {}).get("config", {})
        return (config.get("Labels") or {}).get(name)

    def build(
        self, ref: str, dockerfile: Path, context: Path, args: Mapping[str, str], key: str
    ) -> None:
        argv = [
            *self._base(), "bud", "--isolation", "chroot", "--layers", "--pull=never",
            "--format", "oci", "-f", str(dockerfile), "-t", ref,
            "--label", f"{BUILD_KEY_LABEL}={key}",
        ]  # fmt: skip
        for name, value in args.items():
            argv += ["--build-arg", f"{name}={value}"]
        if args.get("UV_CACHE_DIR") == HOST_UV_CACHE_MOUNT:
            host_cache = host_uv_cache()
            host_cache.mkdir(parents=True, exist_ok=True)
            argv += ["--volume", f"{host_cache}:{HOST_UV_CACHE_MOUNT}"]
        run([*argv, str(context)], what=f"building {ref}")

    def rootfs(self, ref: str, tarball: Path, key: str) -> None:
        container = run(
            [*self._base(), "from", "scratch"], what="buildah from", capture=True
        ).strip()
        try:
            run([*self._base(), "add", container, str(tarball), "/"], what=f"unpacking {tarball}")
            run(
                [*self._base(), "config", "--env", PATH_ENV, "--cmd", "/bin/bash",
                 "--label", f"{BUILD_KEY_LABEL}={key}", container],
                what="buildah config",
            )  # fmt: skip
            run(
                [*self._base(), "commit", "--format", "oci", container, ref],
                what=f"committing {ref}",
            )
        finally:
            subprocess.run([*self._base(), "rm", container], capture_output=True, check=False)

    def push(self, ref: str, dest: str, creds: str | None) -> None:
        argv = [*self._base(), "push", "--quiet", "--tls-verify=false"]
        argv += ["--compression-format", "zstd", "--compression-level", "3"]
        if creds:
            argv += ["--creds", creds]
        run([*argv, ref, f"docker://{dest}"], what=f"pushing {dest}")


def remote_label(dest: str, name: str, creds: str | None) -> str | None:
    """The label ``name`` of an image in the registry, or None if it is not there."""
    argv = ["skopeo", "inspect", "--tls-verify=false"]
    if creds:
        argv += ["--creds", creds]
    result = subprocess.run(
        [*argv, f"docker://{dest}"], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        return None
    return (json.loads(result.stdout).get("Labels") or {}).get(name)


@dataclass(frozen=True)
class Registry:
    address: str
    creds: str | None


def local_registry() -> Registry:
    """The local cluster's registry and credentials (KAITO_REGISTRY or `local-cluster.sh info`)."""
    address = os.environ.get("KAITO_REGISTRY")
    password_file = os.environ.get("KAITO_REGISTRY_PASSWORD_FILE")
    if not address:
        out = run(
            ["bash", str(HACK_DIR / "local-cluster.sh"), "info"],
            what="local-cluster info",
            capture=True,
        )
        info = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        address, password_file = info["REGISTRY"], info["REGISTRY_PASSWORD_FILE"]
    creds = None
    if password_file and Path(password_file).is_file():
        creds = f"kaito:{Path(password_file).read_text().strip()}"
    return Registry(address, creds)


TINY_MODEL_SOURCE = (
    REPO_ROOT / "packages/inference-server/src/kaito_inference/testing/tiny_model.py"
)


def staged_inputs(kind: str, tools_bin: Path) -> list[tuple[str, str]]:
    """The cache-key inputs of a staged context, without making its files."""
    if kind == STAGED_PAUSE:
        compiler = run(["gcc", "--version"], what="gcc --version", capture=True).splitlines()[0]
        return [("pause.c", sha256_file(HACK_DIR / "images/pause/pause.c")), ("gcc", compiler)]
    if kind.startswith(STAGED_TOOL):
        name = kind.removeprefix(STAGED_TOOL)
        binary = tools_bin / name
        if not binary.is_file():
            raise BuildError(f"{binary} is missing: run hack/build-tools.sh")
        return [(name, sha256_file(binary))]
    if kind == STAGED_TINY_MODEL:
        # The builder is deterministic: its source and the locked torch/transformers decide it.
        return [("tiny_model.py", sha256_file(TINY_MODEL_SOURCE)),
                ("uv.lock", sha256_file(REPO_ROOT / "uv.lock"))]  # fmt: skip
    raise ValueError(f"unknown staged context {kind!r}")


def populate_staged(kind: str, directory: Path, tools_bin: Path) -> None:
    """Make the files a staged context's Dockerfile copies."""
    if kind == STAGED_PAUSE:
        source = HACK_DIR / "images/pause/pause.c"
        run(["gcc", "-static", "-Os", "-s", "-o", str(directory / "pause"), str(source)],
            what="compiling pause.c (gcc -static)")  # fmt: skip
    elif kind.startswith(STAGED_TOOL):
        name = kind.removeprefix(STAGED_TOOL)
        shutil.copy2(tools_bin / name, directory / name)
    elif kind == STAGED_TINY_MODEL:
        cli = Path(sys.executable).with_name("kaito-inference")
        run([str(cli), "make-tiny-model", str(directory / "tiny-model"),
             "--adapter-dir", str(directory / "adapters/tiny-lora")],
            what="make-tiny-model", env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip


def tools_bin() -> Path:
    out = run(
        ["bash", str(HACK_DIR / "build-tools.sh"), "--print-bin"], what="tools dir", capture=True
    )
    return Path(out.strip())


def host_ca_files() -> list[Path]:
    """Certificate authorities this machine trusts on top of Debian's (a TLS-intercepting egress
    proxy's, say). The local base images trust them too, or builds could not reach PyPI."""
    directory = Path(os.environ.get("KAITO_EXTRA_CA_DIR", "/usr/local/share/ca-certificates"))
    return sorted(directory.glob("*.crt")) if directory.is_dir() else []


def debian_rootfs(tarball: Path, suite: str) -> None:
    mirror = os.environ.get("KAITO_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    security = os.environ.get("KAITO_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
    sources = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main",
               f"deb {security} {suite}-security main"]  # fmt: skip
    hooks = [
        f"--customize-hook=copy-in {ca} /usr/local/share/ca-certificates/" for ca in host_ca_files()
    ]
    if hooks:
        hooks.append('--customize-hook=chroot "$1" update-ca-certificates')
    run(
        ["mmdebstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}",
         *hooks, "--format=tar", suite, str(tarball), *sources],
        what=f"mmdebstrap {suite}",
    )  # fmt: skip


@dataclass
class Builder:
    buildah: Buildah
    images: Mapping[str, ImageSpec]
    root: Path = REPO_ROOT
    registry: Registry | None = None
    _keys: dict[str, str] | None = None
    _tools_bin: Path | None = None

    def key_inputs(self, spec: ImageSpec) -> tuple[str, list[tuple[str, str]]]:
        """The Dockerfile text and the (path, digest) inputs of a repository-context image."""
        if spec.dockerfile is None:  # the Debian root file system
            return "", [(f"ca/{p.name}", sha256_file(p)) for p in host_ca_files()]
        text = (self.root / spec.dockerfile).read_text()
        if spec.staged:
            return text, []
        files = context_files(self.root, spec.context, context_sources(text))
        return text, [(str(p.relative_to(self.root)), sha256_file(p)) for p in files]

    def _staged_bin(self) -> Path:
        """The tools' bin directory, looked up once (only staged images need it)."""
        if self._tools_bin is None:
            self._tools_bin = tools_bin()
        return self._tools_bin

    def ensure(self, spec: ImageSpec, *, push: bool) -> None:
        keys = self._keys if self._keys is not None else {}
        self._keys = keys
        start = time.monotonic()
        text, inputs = self.key_inputs(spec)
        with contextlib.ExitStack() as stack:
            context = self.root / spec.context
            if spec.staged:
                inputs = staged_inputs(spec.staged, self._staged_bin())
            key = cache_key(spec, dockerfile=text, dependency_keys=keys, inputs=inputs)
            keys[spec.short] = key
            cached = self.buildah.label(spec.local_ref, BUILD_KEY_LABEL) == key
            if spec.staged and not cached:
                context = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kaito-")))
                populate_staged(spec.staged, context, self._staged_bin())
            if cached:
                log(f"{spec.local_ref}: cached")
            elif spec.dockerfile is None:
                log(f"{spec.local_ref}: building the Debian root file system (mmdebstrap)")
                with tempfile.TemporaryDirectory(prefix="kaito-rootfs-") as tmp:
                    tarball = Path(tmp) / "rootfs.tar"
                    debian_rootfs(tarball, spec.tag)
                    self.buildah.rootfs(spec.local_ref, tarball, key)
                log(f"{spec.local_ref}: built in {time.monotonic() - start:.0f}s")
            else:
                log(f"{spec.local_ref}: building {spec.dockerfile}")
                args = resolved_build_args(spec, self.images)
                self.buildah.build(spec.local_ref, self.root / spec.dockerfile, context, args, key)
                log(f"{spec.local_ref}: built in {time.monotonic() - start:.0f}s")
        if push and spec.group != "base":
            self.push(spec, key)

    def push(self, spec: ImageSpec, key: str) -> None:
        if self.registry is None:
            self.registry = local_registry()
        dest = spec.remote_ref(self.registry.address)
        if remote_label(dest, BUILD_KEY_LABEL, self.registry.creds) == key:
            log(f"{dest}: already in the registry")
            return
        start = time.monotonic()
        self.buildah.push(spec.local_ref, dest, self.registry.creds)
        log(f"{dest}: pushed in {time.monotonic() - start:.0f}s")


def build_with_docker(names: Sequence[str], registry: str, kind_cluster: str | None) -> None:
    """Product images with their Dockerfiles' public default bases (machines with Docker)."""
    images = catalog(load_pins(), package_versions())
    for spec in select(names, images):
        if spec.group != "product":
            continue
        ref = f"{registry}/{spec.repository.split('/', 1)[1]}:{spec.tag}"
        log(f"{ref}: docker build -f {spec.dockerfile}")
        subprocess.run(
            ["docker", "build", "-f", str(spec.dockerfile), "-t", ref, "."],
            cwd=REPO_ROOT,
            check=True,
        )
        if kind_cluster:
            subprocess.run(
                ["kind", "load", "docker-image", ref, "--name", kind_cluster], check=True
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kaito_e2e.imagebuild", description=(__doc__ or "").splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (and push) images; default: all")
    build.add_argument(
        "names", nargs="*", help="image short names or groups (base, infra, tools, product, all)"
    )
    build.add_argument("--push", action="store_true", help="push to the local cluster's registry")
    build.add_argument("--registry", help="HOST:PORT to push to (default: the local cluster's)")
    build.add_argument("--builder", choices=["buildah", "docker"], default="buildah")
    build.add_argument(
        "--docker-registry", default="ghcr.io/kaito-py", help="tag prefix with --builder docker"
    )
    build.add_argument(
        "--load-kind", metavar="CLUSTER", help="with --builder docker: kind load the images"
    )
    tag = sub.add_parser("tag", help="print the tag an image gets")
    tag.add_argument("name")
    sub.add_parser("list", help="print the catalog")
    args = parser.parse_args(argv)

    images = catalog(load_pins(), package_versions())
    if args.command == "tag":
        if args.name not in images:
            parser.error(f"unknown image {args.name!r}; choose from {', '.join(images)}")
        print(images[args.name].tag)
        return 0
    if args.command == "list":
        for spec in images.values():
            recipe = spec.dockerfile or "(mmdebstrap)"
            print(f"{spec.short:14} {spec.group:8} {spec.local_ref:48} {recipe}")
        return 0
    if args.builder == "docker":
        build_with_docker(args.names, args.docker_registry, args.load_kind)
        return 0
    try:
        specs = select(args.names, images)
    except KeyError as err:
        parser.error(str(err.args[0]))
    # --registry: any registry, with KAITO_REGISTRY_CREDS (user:password) if it needs them.
    registry = (
        Registry(args.registry, os.environ.get("KAITO_REGISTRY_CREDS")) if args.registry else None
    )
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time per cache
        builder = Builder(Buildah(root), images, registry=registry)
        start = time.monotonic()
        try:
            for spec in specs:
                builder.ensure(spec, push=args.push)
        except BuildError as err:
            log(f"ERROR: {err}")
            return 1
        log(f"{len(specs)} image(s) ready in {time.monotonic() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
