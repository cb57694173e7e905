"""Downloading input data: retries, limits and content checks (httpx MockTransport, no network)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from kaito_tuning.errors import InputFetchError
from kaito_tuning.fetch import (
    FetchPolicy,
    check_content,
    download,
    fetch_urls,
    filename_for_url,
    main,
    sniff_kind,
    use_volume,
)

PARQUET = b"PAR1" + b"\x00" * 32 + b"PAR1"
URL = "https://data.example/ds/train-0001.parquet?download=true#x"


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (URL, "train-0001.parquet"),
        ("http://h/a%20b.jsonl", "a b.jsonl"),
        ("http://h/", "data"),
        ("http://h/..hidden.csv", "hidden.csv"),
    ],
)
def test_filename_for_url(url: str, name: str) -> None:
    assert filename_for_url(url) == name


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (PARQUET, "parquet"),
        (b'  [{"a": 1}]', "json"),
        (b'{"a": 1}\n{"a": 2}\n', "jsonl"),
        (b"<!DOCTYPE html><html>", "html"),
        (b"a,b\n1,2\n", "text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        (b"\xff\xfe\xfd not utf8 at all", "binary"),
    ],
)
def test_sniff_kind(head: bytes, kind: str) -> None:
    assert sniff_kind(head) == kind


def test_download_retries_server_errors_with_backoff(tmp_path: Path) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(503) if len(calls) < 3 else httpx.Response(200, content=PARQUET)

    sleeps: list[float] = []
    path = download(
        URL, tmp_path, policy=FetchPolicy(backoff_s=2), client=_client(handler), sleep=sleeps.append
    )
    assert path == tmp_path / "train-0001.parquet"
    assert path.read_bytes() == PARQUET
    assert len(calls) == 3
    assert sleeps == [2.0, 4.0]
    assert not list(tmp_path.glob("*.part"))


def test_download_gives_up_after_the_attempts(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(InputFetchError) as info:
        download(URL, tmp_path, client=_client(handler), sleep=lambda _: None)
    text = str(info.value)
    assert "unreachable after 3 attempts" in text
    assert "connection refused" in text
    assert "check the URL" in text
    assert not list(tmp_path.iterdir())


def test_download_does_not_retry_a_404(tmp_path: Path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(404)

    with pytest.raises(InputFetchError, match="HTTP 404"):
        download(URL, tmp_path, client=_client(handler), sleep=lambda _: None)
    assert len(calls) == 1


def test_download_refuses_oversized_content_length(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=PARQUET * 10)

    with pytest.raises(InputFetchError, match="over the limit of 100"):
        download(URL, tmp_path, policy=FetchPolicy(max_bytes=100), client=_client(handler))


def test_download_refuses_oversized_stream_without_length(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([PARQUET] * 10))  # chunked, no content-length

    with pytest.raises(InputFetchError, match="more than the limit of 100 bytes"):
        download(URL, tmp_path, policy=FetchPolicy(max_bytes=100), client=_client(handler))
    assert not list(tmp_path.iterdir())


def test_download_refuses_an_html_page(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b"<html>login</html>", headers={"content-type": "text/html"}
        )

    with pytest.raises(InputFetchError) as info:
        download(URL, tmp_path, client=_client(handler))
    assert "got an HTML page (content-type text/html)" in str(info.value)
    assert "raw/download link" in str(info.value)
    assert not list(tmp_path.iterdir())


def test_download_names_a_file_without_suffix_by_its_content(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"text": "a"}\n')

    assert download("https://h/export", tmp_path, client=_client(handler)).name == "export.jsonl"


def test_download_rejects_other_schemes(tmp_path: Path) -> None:
    with pytest.raises(InputFetchError, match="only http and https"):
        download("ftp://h/a.csv", tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.parquet", b"", "the file is empty"),
        ("a.parquet", b'{"a": 1}', "name ends in .parquet but the content is jsonl"),
        ("a.parquet", b"PAR1" + b"\x00" * 20, "parquet file is truncated"),
        ("a.csv", b"\x00\x01\x02binary", "name ends in .csv but the content is binary"),
        ("blob", b"\x00\x01\x02binary", "unrecognised content (binary)"),
    ],
)
def test_check_content(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFetchError) as info:
        check_content(path, source="src")
    assert message in str(info.value)


def test_two_urls_with_the_same_file_name_clash(tmp_path: Path) -> None:
    with pytest.raises(InputFetchError, match=r"several URLs save as train\.parquet"):
        fetch_urls(["http://a/train.parquet", "http://b/train.parquet"], tmp_path)


def test_volume_is_checked_and_copied(tmp_path: Path) -> None:
    src = tmp_path / "vol"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "train.jsonl").write_text('{"text": "a"}\n')
    (src / "README.md").write_text("ignored")
    files = use_volume(src, tmp_path / "dest")
    assert files == [tmp_path / "dest" / "sub" / "train.jsonl"]
    assert use_volume(src, src) == [src / "sub" / "train.jsonl"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFetchError, match=r"no \.parquet"):
        use_volume(empty, tmp_path / "x")
    with pytest.raises(InputFetchError, match="not a directory"):
        use_volume(tmp_path / "missing", tmp_path / "x")


def test_cli_failure_writes_the_termination_log(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    code = main(["--volume", str(tmp_path / "missing"), "--termination-log", str(log)])
    assert code == InputFetchError.exit_code
    assert log.read_text().startswith("InputUnavailable: reading input volume")
