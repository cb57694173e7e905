"""Fetch the tuning input into the data directory: the Job's init step.

`kaito-fetch-input` takes exactly one source: http(s) URLs (downloaded with retries and
back-off, a size limit, and checks that the bytes are what the name says: parquet magic, JSON,
UTF-8 text, never an HTML page), an OCI image pulled with the registry credentials, or a mounted
volume, which is checked and copied. Failures exit non-zero with a message in the termination
log that says what to fix. `kaito-tune --data URL` reuses `download` for one-container runs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import httpx

from kaito_tuning._logging import configure_logging
from kaito_tuning.errors import DEFAULT_TERMINATION_LOG, InputFetchError, report_failure

logger = logging.getLogger(__name__)

# Most structured first: a directory holding several types is read as the first one present.
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".txt")
DEFAULT_MAX_BYTES = 20 * 1024**3  # 20 GiB: far above any LoRA set, low enough to catch mistakes
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_SNIFF_BYTES = 4096


@dataclass(frozen=True)
class FetchPolicy:
    """How hard to try and what to accept when downloading."""

    attempts: int = 3
    backoff_s: float = 2.0
    max_backoff_s: float = 30.0
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_s: float = 60.0


def is_url(value: str) -> bool:
    """True for http(s) URLs (the only schemes the job downloads)."""
    return urlsplit(value).scheme in ("http", "https")


def filename_for_url(url: str) -> str:
    """The file name to save a URL as: its last path segment without query or fragment."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    name = name.replace("\\", "_").lstrip(".")
    return name or "data"


def sniff_kind(head: bytes) -> str:
    """Classify the first bytes of a file: parquet, json, jsonl, html, binary or text."""
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    lowered = stripped[:64].lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        return "html"
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    if b"\x00" in head:
        return "binary"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        # A multi-byte character cut at the end of the sniffed window is still text.
        if err.start < len(head) - 4:
            return "binary"
    return "text"


_EXPECTED_KIND = {
    ".parquet": {"parquet"},
    ".json": {"json", "jsonl"},
    ".jsonl": {"jsonl", "json"},
    ".csv": {"text"},
    ".txt": {"text", "json", "jsonl"},
}
_SUFFIX_FOR_KIND = {"parquet": ".parquet", "json": ".json", "jsonl": ".jsonl", "text": ".txt"}


def check_content(path: Path, *, source: str, content_type: str | None = None) -> Path:
    """Check a fetched file is a dataset of the kind its name says; name it if it has no suffix.

    Returns the (possibly renamed) path. Raises InputFetchError with what was found instead.
    """
    size = path.stat().st_size
    if size == 0:
        raise InputFetchError(f"fetching {source}: the file is empty")
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    kind = sniff_kind(head)
    mime = (content_type or "").split(";")[0].strip().lower()
    if kind == "html" or mime == "text/html":
        raise InputFetchError(
            f"fetching {source}: got an HTML page (content-type {mime or 'unknown'}), "
            "not a dataset",
            hint="use the file's raw/download link (for Hugging Face: .../resolve/main/<file>)",
        )
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        if kind not in _SUFFIX_FOR_KIND:
            raise InputFetchError(
                f"fetching {source}: unrecognised content ({kind}); expected parquet, JSON, JSON "
                "lines, CSV or text"
            )
        renamed = path.with_name(path.name + _SUFFIX_FOR_KIND[kind])
        path.rename(renamed)
        return renamed
    if kind not in _EXPECTED_KIND[suffix]:
        raise InputFetchError(f"fetching {source}: name ends in {suffix} but the content is {kind}")
    if suffix == ".parquet":
        with path.open("rb") as fh:
            fh.seek(-4, 2)
            if fh.read(4) != b"PAR1":
                raise InputFetchError(f"fetching {source}: parquet file is truncated (no footer)")
    return path


def _backoff(policy: FetchPolicy, attempt: int) -> float:
    return float(min(policy.max_backoff_s, policy.backoff_s * 2 ** (attempt - 1)))


class _Retryable(Exception):
    pass


def _download_once(client: httpx.Client, url: str, part: Path, policy: FetchPolicy) -> str | None:
    """One GET into `part`; returns the content type. Raises _Retryable or InputFetchError."""
    with client.stream("GET", url) as resp:
        if resp.status_code in _RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {resp.status_code}")
        if resp.status_code != 200:
            raise InputFetchError(
                f"fetching {url}: HTTP {resp.status_code}",
                hint="check the URL is right and readable without credentials",
            )
        length = resp.headers.get("content-length")
        if length and length.isdigit() and int(length) > policy.max_bytes:
            raise InputFetchError(
                f"fetching {url}: {int(length)} bytes is over the limit of {policy.max_bytes}",
                hint="raise --max-bytes or use a smaller dataset",
            )
        written = 0
        with part.open("wb") as out:
            for chunk in resp.iter_bytes(1 << 20):
                written += len(chunk)
                if written > policy.max_bytes:
                    raise InputFetchError(
                        f"fetching {url}: more than the limit of {policy.max_bytes} bytes",
                        hint="raise --max-bytes or use a smaller dataset",
                    )
                out.write(chunk)
        return resp.headers.get("content-type")


def download(
    url: str,
    dest_dir: Path,
    *,
    policy: FetchPolicy | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download `url` into `dest_dir` with retries, limits and content checks; return the file."""
    policy = policy or FetchPolicy()
    if not is_url(url):
        raise InputFetchError(f"fetching {url}: only http and https URLs are supported")
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / filename_for_url(url)
    part = target.with_name(target.name + ".part")
    own_client = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=policy.timeout_s)
    last = ""
    content_type: str | None = None
    try:
        for attempt in range(1, policy.attempts + 1):
            try:
                content_type = _download_once(http, url, part, policy)
                break
            except (_Retryable, httpx.TransportError) as err:
                last = str(err) or type(err).__name__
                part.unlink(missing_ok=True)
                logger.warning(
                    "fetching %s: attempt %d/%d failed: %s", url, attempt, policy.attempts, last
                )
                if attempt < policy.attempts:
                    sleep(_backoff(policy, attempt))
            except InputFetchError:
                part.unlink(missing_ok=True)
                raise
        else:
            raise InputFetchError(
                f"fetching {url}: unreachable after {policy.attempts} attempts ({last})",
                hint="check the URL, and that the cluster can reach the host (proxy, egress)",
            )
    finally:
        if own_client:
            http.close()
    part.replace(target)
    try:
        return check_content(target, source=url, content_type=content_type)
    except InputFetchError:
        target.unlink(missing_ok=True)
        raise


def fetch_urls(urls: Sequence[str], dest: Path, *, policy: FetchPolicy | None = None) -> list[Path]:
    """Download every URL into `dest`; two URLs may not map to the same file name."""
    names = [filename_for_url(url) for url in urls]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise InputFetchError(f"fetching input URLs: several URLs save as {', '.join(clashes)}")
    files = [download(url, dest, policy=policy) for url in urls]
    for path in files:
        logger.info("fetched %s (%d bytes)", path, path.stat().st_size)
    return files


def data_files_in(directory: Path) -> list[Path]:
    """Dataset files (by suffix) anywhere under `directory`, sorted."""
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
    )


def use_volume(source: Path, dest: Path) -> list[Path]:
    """Check a mounted volume holds dataset files; copy them into `dest` if it is elsewhere."""
    if not source.is_dir():
        raise InputFetchError(f"reading input volume {source}: not a directory (is it mounted?)")
    files = data_files_in(source)
    if not files:
        raise InputFetchError(
            f"reading input volume {source}: no {', '.join(DATA_SUFFIXES)} files found"
        )
    if source.resolve() == dest.resolve():
        return files
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in files:
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied.append(target)
    return copied


def fetch_image(
    ref: str, dest: Path, *, docker_config: Path | None, plain_http: bool = False
) -> list[Path]:
    """Pull a dataset image (an OCI artifact of data files) into `dest` and check its files."""
    from kaito_tuning.push import pull_directory

    pulled = pull_directory(ref, dest, docker_config=docker_config, plain_http=plain_http)
    files = [p for p in pulled if p.suffix.lower() in DATA_SUFFIXES]
    if not files:
        raise InputFetchError(f"pulling dataset image {ref}: it holds no dataset files")
    return [check_content(p, source=f"{ref}:{p.name}") for p in files]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaito-fetch-input", description="Fetch tuning input data into a directory."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--urls", nargs="+", metavar="URL", help="http(s) URLs to download")
    source.add_argument("--image", metavar="REF", help="OCI image/artifact holding the data")
    source.add_argument("--volume", type=Path, metavar="DIR", help="mounted directory to use")
    parser.add_argument("--dest", type=Path, default=Path("/mnt/data"), help="output directory")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--attempts", type=int, default=3, help="tries per URL")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per read")
    parser.add_argument("--docker-config", type=Path, help="dockerconfigjson for --image")
    parser.add_argument("--plain-http", action="store_true", help="registry over http (tests)")
    parser.add_argument("--termination-log", type=Path, default=DEFAULT_TERMINATION_LOG)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `kaito-fetch-input`; returns the process exit code."""
    args = _parser().parse_args(argv)
    configure_logging()
    policy = FetchPolicy(attempts=args.attempts, max_bytes=args.max_bytes, timeout_s=args.timeout)
    try:
        if args.urls:
            files = fetch_urls(args.urls, args.dest, policy=policy)
        elif args.image:
            files = fetch_image(
                args.image, args.dest, docker_config=args.docker_config, plain_http=args.plain_http
            )
        else:
            files = use_volume(args.volume, args.dest)
    except Exception as err:  # process boundary: every failure becomes an exit code
        return report_failure(err, args.termination_log)
    logger.info("input ready in %s: %s", args.dest, ", ".join(p.name for p in files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
