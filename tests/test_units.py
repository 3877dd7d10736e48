"""Unit tests of the small pieces: boot mode, state record, lock, retries, sizing, error
classification, logging."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import pytest
import tenacity

from reconciler import lock, probe, retry, sizing, staterecord
from reconciler.config import Retries
from reconciler.errors import (
    ImageNotFound,
    LockHeld,
    RegistryAccessDenied,
    ToolFailed,
    TransientError,
    VerificationError,
)
from reconciler.tools import skopeo
from reconciler.tools._run import run
from reconciler.unpack import Layer


def host(tmp_path: Path, cmdline: str, marker: str | None = None) -> Path:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").write_text(cmdline)
    if marker:
        (tmp_path / "run/cos").mkdir(parents=True)
        (tmp_path / f"run/cos/{marker}_mode").touch()
    return tmp_path


@pytest.mark.parametrize(("cmdline", "marker", "mode"), [
    ("root=LABEL=COS_STATE cos-img/filename=/cOS/passive.img", None, "passive"),
    ("root=LABEL=COS_STATE elemental.mode=recovery", None, "recovery"),
    ("cos-img/filename=/cOS/active.img", "passive", "passive"),
    ("BOOT_IMAGE=/boot/vmlinuz rd.live.image", None, "live"),
])
def test_boot_mode_from_markers_then_cmdline(tmp_path: Path, cmdline: str,
                                             marker: str | None, mode: str) -> None:
    """The initrd marker wins, then the kernel command line; neither means a live medium."""
    assert probe.boot_mode(host(tmp_path, cmdline, marker)) == mode


def test_state_record_round_trip_is_atomic(tmp_path: Path) -> None:
    """The record is written via a temporary file and read back by filesystem UUID."""
    entry = staterecord.ImageRecord("oci://r/x:1", "sha256:" + "a" * 64, "uuid-1", "now", "gpg")
    staterecord.write(tmp_path, staterecord.StateRecord(active=entry))
    assert not list(tmp_path.glob(".*.tmp"))
    record = staterecord.read(tmp_path)
    assert record is not None and record.by_uuid("uuid-1") == entry
    assert record.by_uuid("other") is None


def test_unreadable_state_record_is_treated_as_absent(tmp_path: Path) -> None:
    """A corrupt record means 'unknown images', never a crash."""
    (tmp_path / "state.yaml").write_bytes(b"\xff: [")
    assert staterecord.read(tmp_path) is None


def test_lock_held_by_another_holder_times_out(tmp_path: Path) -> None:
    """A second holder waits its bound and gets LockHeld naming the holder."""
    with (lock.held(tmp_path, 1), pytest.raises(LockHeld, match=str(os.getpid())),
          lock.held(tmp_path, 0.3, poll_s=0.05)):
        pass


def test_retries_only_transient_errors_and_are_bounded() -> None:
    """Transient errors are retried up to the bound; permanent ones fail at once."""
    retry.WAIT_OVERRIDE = tenacity.wait_none()
    try:
        calls: list[int] = []

        def flaky() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise TransientError("connection refused")
            return "ok"

        assert retry.with_retries("x", flaky, Retries(attempts=3)) == "ok"
        calls.clear()

        def down() -> None:
            calls.append(1)
            raise TransientError("connection refused")

        with pytest.raises(TransientError, match="gave up after 4 attempts"):
            retry.with_retries("x", down, Retries(attempts=4))
        assert len(calls) == 4
        calls.clear()

        def missing() -> None:
            calls.append(1)
            raise ImageNotFound("no such tag")

        with pytest.raises(ImageNotFound):
            retry.with_retries("x", missing, Retries(attempts=4))
        assert len(calls) == 1
    finally:
        retry.WAIT_OVERRIDE = None


def test_gzip_layer_size_comes_from_its_trailer(tmp_path: Path) -> None:
    """The uncompressed size of a gzip layer is read from its last four bytes."""
    blob = tmp_path / "layer"
    blob.write_bytes(gzip.compress(b"x" * 1_000_000))
    layer = Layer(blob, "application/vnd.oci.image.layer.v1.tar+gzip", "sha256:0")
    assert sizing.uncompressed_size(layer) == 1_000_000
    assert sizing.image_size([layer]) % (1 << 20) == 0
    assert sizing.image_size([layer]) > 1_000_000 + sizing.FIXED_OVERHEAD


def test_zstd_layer_size_comes_from_its_frame_header(tmp_path: Path) -> None:
    """zstd records the content size in the frame header; it is used without decompressing."""
    raw = tmp_path / "raw"
    raw.write_bytes(os.urandom(300_000))
    run(["zstd", "-q", "-f", str(raw), "-o", str(tmp_path / "layer")])
    layer = Layer(tmp_path / "layer", "application/vnd.oci.image.layer.v1.tar+zstd", "sha256:0")
    assert sizing.uncompressed_size(layer) == 300_000


@pytest.mark.parametrize(("stderr", "kind"), [
    ("reading manifest v9 in r/x: manifest unknown: manifest unknown", ImageNotFound),
    ("unauthorized: authentication required", RegistryAccessDenied),
    ("x509: certificate signed by unknown authority", RegistryAccessDenied),
    ("dial tcp 127.0.0.1:9: connect: connection refused", TransientError),
    ("received unexpected HTTP status: 503 Service Unavailable", TransientError),
    ("Source image rejected: A signature was required, but no signature exists",
     VerificationError),
])
def test_skopeo_failures_are_sorted_by_what_to_do(stderr: str, kind: type) -> None:
    """Registry errors map to permanent or transient error types."""
    err = ToolFailed("skopeo failed", argv=["skopeo"], returncode=1, stderr=stderr)
    assert isinstance(skopeo.classify(err, "r/x:1"), kind)


def test_logs_are_json_lines_when_not_on_a_tty(tmp_path: Path) -> None:
    """Without a TTY, stderr carries one JSON object per line; stdout has only the document."""
    config = tmp_path / "upgrade.yaml"
    config.write_text("reconciler_format: 1\nsystem: {image: reg.example/cos:v1}\n"
                      "verification: {policy: insecure-accept-anything}\n")
    reconcile = str(Path(sys.executable).parent / "reconcile")
    res = run([reconcile, "validate", str(config)], accept=(0,))
    assert res.text.startswith(f"{config}: valid")
    lines = res.stderr.decode().splitlines()
    assert lines, "the disabled verification must be logged"
    events = [json.loads(line) for line in lines]
    assert any(e["event"] == "signature verification is DISABLED" for e in events)
