"""The sandbox registry: a real docker-registry on loopback whose request log can be read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.errors import ToolFailed
from reconciler.sandbox.images import ImageFactory
from reconciler.sandbox.registry import Registry
from reconciler.tools._run import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (mknod, chown, setcap for the images)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _copy(reference: str, dest: Path) -> None:
    run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{reference}",
         f"oci:{dest}:x"])


def test_registry_starts_answers_and_stops(tmp_path: Path) -> None:
    """The registry answers /v2/ on its port while in the `with` block and is gone after."""
    with Registry(tmp_path) as registry:
        assert registry.host.startswith("127.0.0.1:")
        assert registry.ping() == 200
        assert registry._proc is not None
        pid = registry._proc.pid
        assert registry.log_path.exists()
    assert not _pid_alive(pid)


def test_registry_stops_when_the_block_fails(tmp_path: Path) -> None:
    """An exception inside the `with` block still stops the server."""
    with pytest.raises(RuntimeError), Registry(tmp_path) as registry:
        assert registry._proc is not None
        pid = registry._proc.pid
        raise RuntimeError("test failure")
    assert not _pid_alive(pid)


def test_start_failure_raises_with_log_tail(tmp_path: Path) -> None:
    """A registry that cannot start is reported with the tail of its log, and not left behind."""
    blocker = Registry(tmp_path / "first")
    with blocker:
        second = Registry(tmp_path / "second", port=blocker.port)  # already taken
        with pytest.raises(ToolFailed, match="address already in use"):
            second.__enter__()
        assert not second.alive()


def test_request_log_shows_only_new_layers_fetched(tmp_path: Path) -> None:
    """After fetching v1, fetching v2 into the same layout downloads only v2's new blobs."""
    with Registry(tmp_path / "registry") as registry:
        factory = ImageFactory(tmp_path / "factory", registry.host)
        v1, v2 = factory.build_pair(key=None)
        start = registry.mark()
        _copy(v1.reference, tmp_path / "pulled")
        assert sorted(registry.blob_gets(since=start)) == sorted([*v1.layers, v1.config])
        assert registry.blob_bytes_served(since=start) >= sum(v1.layer_sizes)
        second = registry.mark()
        _copy(v2.reference, tmp_path / "pulled")
        assert sorted(registry.blob_gets(since=second)) == sorted([v2.layers[2], v2.config])
        served = registry.blob_bytes_served(since=second)
        assert v2.layer_sizes[2] <= served < v2.layer_sizes[2] + 4096
        manifests = [r for r in registry.requests(since=second) if "/manifests/" in r.path]
        assert manifests and all(r.status == 200 for r in manifests if r.method == "GET")


def test_corrupt_blob_breaks_the_pull(tmp_path: Path) -> None:
    """A corrupted stored blob keeps its size but fails skopeo's digest check."""
    with Registry(tmp_path / "registry") as registry:
        factory = ImageFactory(tmp_path / "factory", registry.host)
        v1, _ = factory.build_pair(key=None)
        size = registry.blob_path(v1.layers[0]).stat().st_size
        registry.corrupt_blob(v1.layers[0])
        assert registry.blob_path(v1.layers[0]).stat().st_size == size
        with pytest.raises(ToolFailed):
            _copy(v1.reference, tmp_path / "pulled")


def test_stop_and_start_keep_port_and_images(tmp_path: Path) -> None:
    """An outage can be simulated: after stop()/start() the same images are served again."""
    with Registry(tmp_path / "registry") as registry:
        factory = ImageFactory(tmp_path / "factory", registry.host)
        v1, _ = factory.build_pair(key=None)
        registry.stop()
        assert not registry.alive()
        with pytest.raises(ToolFailed):
            factory.manifest_digest(v1.reference)
        registry.start()
        assert factory.manifest_digest(v1.reference) == v1.digest
