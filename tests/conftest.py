"""Shared test world: a real registry on loopback, signed images, fresh cOS disks per test.

Everything is created by the fixtures and torn down by them, also when a test fails.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Config validation fingerprints go to a per-session directory, not the host's /run.
os.environ.setdefault("RECONCILE_RUN_DIR", f"/tmp/cos-reconciler-test-run-{os.getpid()}")

from reconciler.tools._run import Result, run

ROOT = Path(__file__).resolve().parents[1]
RECONCILE = str(Path(sys.executable).parent / "reconcile")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root (loop devices, mounts)")
        for item in items:
            if "needs_root" in item.keywords:
                item.add_marker(skip)


def pytest_unconfigure(config: pytest.Config) -> None:
    del config
    import shutil

    shutil.rmtree(os.environ["RECONCILE_RUN_DIR"], ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    from reconciler import logs

    logs.configure()
    config.addinivalue_line("markers", "needs_root: uses loop devices, mounts or servers")


@dataclass
class World:
    """The session's registry, signing key and images v1/v2."""

    workdir: Path
    registry: Any
    factory: Any
    key: Any
    other_key: Any
    v1: Any
    v2: Any

    @property
    def host(self) -> str:
        return str(self.registry.host)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Registry + GPG keys + a signed v1/v2 image pair, for the whole session."""
    if os.geteuid() != 0:
        pytest.skip("needs root (registry storage, device nodes in images)")
    from reconciler.sandbox import gpg
    from reconciler.sandbox.images import ImageFactory
    from reconciler.sandbox.registry import Registry

    workdir = tmp_path_factory.mktemp("world")
    key = gpg.make_key(workdir / "gpg")
    other = gpg.make_key(workdir / "gpg-other", name="someone else")
    try:
        with Registry(workdir / "registry") as registry:
            factory = ImageFactory(workdir / "images", registry.host)
            v1, v2 = factory.build_pair("cos/system", key=key)
            gpg.stop_agent(key)
            yield World(workdir, registry, factory, key, other, v1, v2)
    finally:
        gpg.stop_agent(key)
        gpg.stop_agent(other)


@dataclass
class Machine:
    """One fresh cOS disk, a fake host root, a config file, and a way to run `reconcile`."""

    disk: Any
    host_root: Path
    config: Path
    world: World

    def write_config(self, image: str, *, extra: dict[str, Any] | None = None,
                     verification: dict[str, Any] | None = None) -> None:
        doc: dict[str, Any] = {
            "reconciler_format": 1,
            "system": {"image": image},
            "verification": verification if verification is not None else {
                "gpg": {"keys": [str(self.world.key.public_key)],
                        "lookaside": f"file://{self.world.factory.sigstore}"}},
            "registry": {"insecure": [self.world.host]},
            "retries": {"attempts": 2, "initial_wait_s": 0, "max_wait_s": 0},
            "lock_timeout_s": 1,
        }
        doc.update(extra or {})
        self.config.write_text(json.dumps(doc, indent=2))

    def reconcile(self, *args: str, accept: tuple[int, ...] = tuple(range(256))) -> Result:
        return run([RECONCILE, "--config", str(self.config), "--disk", self.disk.device,
                    "--host-root", str(self.host_root), *args], accept=accept, timeout=600)

    def status(self) -> dict[str, Any]:
        res = self.reconcile("status", "--json", accept=(0,))
        doc: dict[str, Any] = json.loads(res.stdout)
        return doc


@pytest.fixture
def machine(world: World, tmp_path: Path) -> Iterator[Machine]:
    """A fresh disk with a factory image in active, booted from active."""
    from reconciler.sandbox.disk import SandboxDisk, fake_host_root

    with SandboxDisk(tmp_path / "disk", state_mib=256, persistent_mib=128) as disk:
        host_root = fake_host_root(tmp_path / "host", mode="active")
        yield Machine(disk, host_root, tmp_path / "upgrade.yaml", world)
