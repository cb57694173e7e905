"""Push the adapter directory to a registry as an OCI artifact, and pull one back.

The output directory (adapter_config.json, adapter_model.safetensors, tokenizer files,
metrics) becomes one OCI manifest with one layer per file, each named by the standard
`org.opencontainers.image.title` annotation, so `oras pull` (or oras-py) recreates the same
directory: this is the layout the inference server's adapter puller reads. Registry traffic
goes through oras-py; this module adds what the job needs around it: credentials read from a
Kubernetes dockerconfigjson file, a credential check before any blob is sent, fail-fast
authentication errors that name the registry and user, and a read-back that compares every
layer digest so a partial push is never reported as success.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaito_tuning.errors import RegistryAuthError, RegistryError, TuningError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_MEDIA_TYPE = "application/vnd.kaito.adapter.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
TITLE_ANNOTATION = "org.opencontainers.image.title"
MODEL_NAME_ANNOTATION = "sh.kaito.model.name"
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
_DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """A username/password pair for one registry, and the file it came from."""

    username: str
    password: str = field(repr=False)
    source: Path


@dataclass(frozen=True)
class PushResult:
    """What was pushed: the reference, the manifest digest and each file's layer digest."""

    reference: str
    digest: str
    layers: dict[str, str]


def _normalise_host(key: str) -> str:
    host = key.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    return host.split("/", 1)[0].lower()


def _host_aliases(registry: str) -> set[str]:
    host = registry.lower()
    aliases = {host}
    if host in _DOCKER_HUB_ALIASES:
        aliases.update(_DOCKER_HUB_ALIASES)
    if host.startswith("localhost"):
        aliases.add(host.replace("localhost", "127.0.0.1", 1))
    if host.startswith("127.0.0.1"):
        aliases.add(host.replace("127.0.0.1", "localhost", 1))
    return aliases


def read_docker_config(path: Path) -> dict[str, Any]:
    """Read a dockerconfigjson file (the `.dockerconfigjson` key of a Kubernetes secret)."""
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise RegistryAuthError(
            f"reading registry credentials {path}: {err.strerror or err}",
            hint="mount the imagePushSecret (type kubernetes.io/dockerconfigjson) at this path",
        ) from err
    except json.JSONDecodeError as err:
        raise RegistryAuthError(f"reading registry credentials {path}: not JSON ({err})") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("auths"), dict):
        raise RegistryAuthError(
            f"reading registry credentials {path}: no 'auths' map",
            hint="the secret must be of type kubernetes.io/dockerconfigjson",
        )
    return raw


def find_credentials(config: dict[str, Any], registry: str, source: Path) -> Credentials | None:
    """The credentials for `registry` in a parsed docker config, or None if it has none."""
    wanted = _host_aliases(registry)
    for key, entry in config["auths"].items():
        if _normalise_host(str(key)) not in wanted or not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]), source)
        encoded = entry.get("auth")
        if not encoded:
            continue
        try:
            user, sep, password = (
                base64.b64decode(str(encoded), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError) as err:
            raise RegistryAuthError(
                f"reading registry credentials {source}: the 'auth' entry for {key} is not "
                "base64 of user:password"
            ) from err
        if not sep:
            raise RegistryAuthError(
                f"reading registry credentials {source}: the 'auth' entry for {key} has no ':'"
            )
        return Credentials(user, password, source)
    return None


def sha256_file(path: Path) -> str:
    """The `sha256:<hex>` digest of a file, as registries name blobs."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def files_to_push(directory: Path) -> list[Path]:
    """The regular top-level files of an adapter directory; it must hold the adapter itself."""
    if not directory.is_dir():
        raise TuningError(f"pushing {directory}: not a directory")
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise TuningError(
            f"pushing {directory}: {', '.join(missing)} missing; nothing was pushed",
            hint="the push runs after a successful training run writes the adapter",
        )
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


class _Client:
    """An oras-py client for one registry with credentials and fail-fast auth errors."""

    def __init__(self, reference: str, creds: Credentials | None, *, plain_http: bool) -> None:
        import oras.client
        import oras.container
        from oras.auth import AuthenticationException, TokenAuth

        class _Auth(TokenAuth):
            # Registries using htpasswd answer `Basic` challenges; oras-py's token backend only
            # speaks `Bearer`. Raising AuthenticationException stops oras-py's retry loop.
            def authenticate_request(
                self, original: Any, headers: dict[str, str], refresh: bool = False
            ) -> Any:  # oras-py annotates a (dict, Literal) pair per branch
                challenge = original.headers.get("Www-Authenticate", "")
                basic = getattr(self, "_basic_auth", None)
                if challenge.lower().startswith("basic"):
                    if not basic:
                        raise AuthenticationException("registry wants credentials; none given")
                    return {**(headers or {}), "Authorization": f"Basic {basic}"}, True
                result = super().authenticate_request(original, headers, refresh)
                if not result[1]:
                    raise AuthenticationException("registry refused to issue a token")
                return result

        self.container = oras.container.Container(reference)
        self.registry = str(self.container.registry)
        self.creds = creds
        self.client = oras.client.OrasClient(hostname=self.registry, insecure=plain_http)
        auth = _Auth()
        auth.session = self.client.session
        auth.prefix = "http" if plain_http else "https"
        auth._tls_verify = True  # oras-py's get_auth_backend sets this private field too
        if creds is not None:
            auth.set_basic_auth(creds.username, creds.password)
        self.client.auth = auth
        self.auth_exception = AuthenticationException
        self.prefix = auth.prefix

    def who(self) -> str:
        if self.creds is None:
            return "anonymously (no credentials for this registry)"
        return f"as user '{self.creds.username}' (credentials from {self.creds.source})"

    def auth_error(self, doing: str, detail: str) -> RegistryAuthError:
        return RegistryAuthError(
            f"{doing}: registry {self.registry} rejected the request {self.who()}: {detail}",
            hint="check the imagePushSecret: a kubernetes.io/dockerconfigjson secret whose "
            f"'auths' has {self.registry} with a user allowed to push to this repository",
        )

    def check_access(self, doing: str) -> None:
        """Reach the registry and authenticate once, before any blob is sent."""
        import requests

        url = f"{self.prefix}://{self.registry}/v2/"
        try:
            self.client.session.get(url, timeout=15)
        except requests.RequestException as err:
            raise RegistryError(
                f"{doing}: cannot reach registry {self.registry}: {type(err).__name__}",
                hint="check the image reference and that the cluster can reach the registry",
            ) from err
        try:
            response = self.client.do_request(url, "GET")
        except self.auth_exception as err:
            raise self.auth_error(doing, str(err)) from err
        if response.status_code in (401, 403):
            raise self.auth_error(doing, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise RegistryError(
                f"{doing}: registry {self.registry} answered HTTP {response.status_code}"
            )


def _open(reference: str, docker_config: Path | None, *, plain_http: bool) -> _Client:
    import oras.container

    try:
        registry = str(oras.container.Container(reference).registry)
    except ValueError as err:
        raise RegistryError(f"parsing image reference {reference!r}: {err}") from err
    creds = None
    if docker_config is not None:
        creds = find_credentials(read_docker_config(docker_config), registry, docker_config)
        if creds is None:
            logger.warning(
                "%s has no credentials for %s; trying anonymously", docker_config, registry
            )
    return _Client(reference, creds, plain_http=plain_http)


def check_push_access(
    reference: str, *, docker_config: Path | None, plain_http: bool = False
) -> None:
    """Fail now, before hours of training, if the registry is unreachable or refuses the login."""
    client = _open(reference, docker_config, plain_http=plain_http)
    client.check_access(f"checking push access to {reference} before training")


def _map_oras_error(client: _Client, doing: str, err: Exception) -> TuningError:
    text = str(err)
    if isinstance(err, client.auth_exception) or any(
        word in text for word in ("Unauthorized", "Forbidden", "denied")
    ):
        return client.auth_error(doing, text)
    if "Not Found" in text:
        return RegistryError(f"{doing}: not found in registry {client.registry} ({text})")
    return RegistryError(f"{doing}: {text}")


def push_directory(
    directory: Path,
    reference: str,
    *,
    docker_config: Path | None,
    plain_http: bool = False,
    annotations: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> PushResult:
    """Push every file of `directory` as one OCI artifact and verify it by reading it back."""
    doing = f"pushing {directory} to {reference}"
    files = files_to_push(directory)
    client = _open(reference, docker_config, plain_http=plain_http)
    client.check_access(doing)
    local = {p.name: sha256_file(p) for p in files}
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps({"files": sorted(local), **(metadata or {})}))
        try:
            response = client.client.push(
                target=reference,
                files=[f"{p}:{LAYER_MEDIA_TYPE}" for p in files],
                disable_path_validation=True,
                manifest_config=f"{config_path}:{ADAPTER_CONFIG_MEDIA_TYPE}",
                manifest_annotations=annotations or None,
                quiet=True,
            )
        except Exception as err:  # oras-py raises bare ValueError/requests errors
            raise _map_oras_error(client, doing, err) from err
    digest = response.headers.get("Docker-Content-Digest", "")
    remote = _remote_layers(client, f"{doing} (reading it back)")
    if remote != local:
        raise RegistryError(
            f"{doing}: the registry holds different content than was sent "
            f"(sent {sorted(local)}, registry has {sorted(remote)})"
        )
    logger.info("pushed %s (%s): %s", reference, digest or "digest unknown", ", ".join(local))
    return PushResult(reference=reference, digest=digest, layers=local)


def _remote_layers(client: _Client, doing: str) -> dict[str, str]:
    try:
        manifest = client.client.get_manifest(client.container)
    except Exception as err:  # oras-py raises bare ValueError/requests errors
        raise _map_oras_error(client, doing, err) from err
    layers = {}
    for layer in manifest.get("layers", []):
        title = (layer.get("annotations") or {}).get(TITLE_ANNOTATION)
        if title:
            layers[title] = layer["digest"]
    return layers


def pull_directory(
    reference: str, dest: Path, *, docker_config: Path | None, plain_http: bool = False
) -> list[Path]:
    """Pull an artifact pushed by `push_directory` into `dest`, checking every file's digest."""
    doing = f"pulling {reference}"
    client = _open(reference, docker_config, plain_http=plain_http)
    client.check_access(doing)
    remote = _remote_layers(client, doing)
    if not remote:
        raise RegistryError(f"{doing}: the manifest has no named layers")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        client.client.pull(target=reference, outdir=str(dest))
    except Exception as err:  # oras-py raises bare ValueError/requests errors
        raise _map_oras_error(client, doing, err) from err
    paths = []
    for name, digest in sorted(remote.items()):
        path = dest / name
        if not path.is_file() or sha256_file(path) != digest:
            raise RegistryError(f"{doing}: {name} is missing or does not match digest {digest}")
        paths.append(path)
    return paths
