"""Reading GPG signatures from a lookaside store: layout, file:// and http://, bounds."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import reference
from reconciler.errors import ConfigError, TransientError
from reconciler.steps.gpgcheck import MAX_SIGNATURES, read_signatures, signature_url
from reconciler.trust.sigfiles import MAX_SIGNATURE_BYTES

REF = reference.parse("registry.example.com:5000/cos/system:v1")
DIGEST = "sha256:" + "ab" * 32
SUBDIR = f"cos/system@sha256={'ab' * 32}"


def store(root: Path, *blobs: bytes) -> Path:
    directory = root / SUBDIR
    directory.mkdir(parents=True)
    for number, blob in enumerate(blobs, start=1):
        (directory / f"signature-{number}").write_bytes(blob)
    return root


def test_layout_matches_containers_lookaside() -> None:
    """signature N of repo@digest is at <base>/<path without host>@sha256=<hex>/signature-N."""
    assert signature_url("https://sigs.example.com/base/", REF, DIGEST, 3) == \
        f"https://sigs.example.com/base/{SUBDIR}/signature-3"


def test_docker_hub_path_includes_library() -> None:
    """A Docker Hub official image is stored under library/<name>."""
    ref = reference.parse("busybox:latest")
    assert signature_url("file:///s", ref, DIGEST, 1).startswith("file:///s/library/busybox@")


def test_file_store_read_until_first_gap(tmp_path: Path) -> None:
    """file:// signatures are read in order and reading stops at the first missing number."""
    root = store(tmp_path, b"one", b"two")
    (root / SUBDIR / "signature-4").write_bytes(b"after a gap")
    assert read_signatures(f"file://{root}", REF, DIGEST) == [b"one", b"two"]


def test_file_store_without_signatures(tmp_path: Path) -> None:
    """No directory for the digest means no signatures, not an error."""
    assert read_signatures(f"file://{tmp_path}", REF, DIGEST) == []


def test_file_store_bounds_each_signature(tmp_path: Path) -> None:
    """An oversized signature is read only up to one byte past the limit."""
    root = store(tmp_path, b"x" * (MAX_SIGNATURE_BYTES + 100))
    [blob] = read_signatures(f"file://{root}", REF, DIGEST)
    assert len(blob) == MAX_SIGNATURE_BYTES + 1


def test_file_store_bounds_the_count(tmp_path: Path) -> None:
    """At most MAX_SIGNATURES signatures are read."""
    root = store(tmp_path, *([b"s"] * (MAX_SIGNATURES + 3)))
    assert len(read_signatures(f"file://{root}", REF, DIGEST)) == MAX_SIGNATURES


def test_unsupported_scheme_is_a_config_error() -> None:
    """Only file:// and http(s):// stores are supported."""
    with pytest.raises(ConfigError, match="lookaside"):
        read_signatures("ftp://example.com/sigs", REF, DIGEST)


class _Handler(http.server.SimpleHTTPRequestHandler):
    fail_with: int | None = None

    def do_GET(self) -> None:
        if self.fail_with:
            self.send_error(self.fail_with)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def http_store(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on loopback serving tmp_path; stopped after the test."""
    store(tmp_path, b"first", b"second")

    def handler(*args: object, **kwargs: object) -> _Handler:
        return _Handler(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        _Handler.fail_with = None
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_store_reads_until_404(http_store: tuple[str, Path]) -> None:
    """http:// signatures are fetched in order until the server answers 404."""
    url, _ = http_store
    assert read_signatures(url, REF, DIGEST) == [b"first", b"second"]


def test_http_store_server_error_is_transient(http_store: tuple[str, Path]) -> None:
    """A 5xx from the signature server is a transient (retryable) error."""
    url, _ = http_store
    _Handler.fail_with = 503
    with pytest.raises(TransientError, match="503"):
        read_signatures(url, REF, DIGEST)


def test_http_store_unreachable_is_transient() -> None:
    """Nobody listening is a transient error naming the URL."""
    with pytest.raises(TransientError, match="could not be reached"):
        read_signatures("http://127.0.0.1:9", REF, DIGEST)
