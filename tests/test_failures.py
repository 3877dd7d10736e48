"""Each bad input or failure gets a clear error with its documented exit code, and the slots
are left exactly as they were."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from reconciler.errors import ExitCode
from tests.conftest import Machine

pytestmark = pytest.mark.needs_root


def slot_ids(machine: Machine) -> dict[str, object]:
    return {n: (s["fs_uuid"], s["digest"]) for n, s in machine.status()["slots"].items()}


def one_error(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("reconcile: error:")]
    assert len(lines) == 1, text
    return lines[0]


def check_refused(machine: Machine, code: ExitCode, *args: str) -> str:
    before = slot_ids(machine)
    res = machine.reconcile(*args, accept=(int(code),))
    stderr = res.stderr.decode()
    assert "Traceback" not in stderr
    assert "hint:" in stderr
    assert slot_ids(machine) == before
    return one_error(stderr)


def test_malformed_yaml(machine: Machine) -> None:
    """Broken YAML: config-error exit code, the line is named."""
    machine.config.write_text("reconciler_format: 1\nsystem: [\n")
    assert "malformed YAML" in check_refused(machine, ExitCode.CONFIG)


def test_schema_violation(machine: Machine) -> None:
    """A schema violation: config-error exit code with the JSON path."""
    machine.write_config(machine.world.v1.reference, extra={"retries": {"attempts": "many"}})
    res = machine.reconcile(accept=(int(ExitCode.CONFIG),))
    assert "/retries/attempts" in res.stderr.decode()


def test_unknown_image(machine: Machine) -> None:
    """A tag the registry does not have fails at once (not retried) with a hint."""
    machine.write_config(f"{machine.world.host}/cos/system:no-such-tag")
    assert "does not exist" in check_refused(machine, ExitCode.FAILURE)


def test_unreachable_registry_after_bounded_retries(machine: Machine) -> None:
    """Nothing listening: retried a bounded number of times, then the transient exit code."""
    machine.write_config("127.0.0.1:9/cos/system:v1",
                         extra={"registry": {"insecure": ["127.0.0.1:9"]}})
    assert "gave up after 2 attempts" in check_refused(machine, ExitCode.TRANSIENT)


def test_unsigned_image_is_refused(machine: Machine) -> None:
    """An image without a signature is refused; nothing is written."""
    world = machine.world
    unsigned = world.factory.push(world.v1, f"{world.host}/cos/unsigned:v1")
    machine.write_config(unsigned.reference)
    assert "signature" in check_refused(machine, ExitCode.VERIFICATION)


def test_image_signed_by_another_key_is_refused(machine: Machine) -> None:
    """A signature by a key that is not configured is refused."""
    world = machine.world
    other = world.factory.push(world.v1, f"{world.host}/cos/otherkey:v1", key=world.other_key)
    machine.write_config(other.reference)
    check_refused(machine, ExitCode.VERIFICATION)


def test_no_space_on_state(world, tmp_path: Path) -> None:
    """COS_STATE too small for another image: refused before writing, slots untouched."""
    from reconciler.sandbox.disk import SandboxDisk, fake_host_root

    with SandboxDisk(tmp_path / "disk", state_mib=72, persistent_mib=64) as disk:
        m = Machine(disk, fake_host_root(tmp_path / "host", mode="active"),
                    tmp_path / "upgrade.yaml", world)
        m.write_config(world.v1.reference)
        msg = check_refused(m, ExitCode.NO_SPACE)
        assert "COS_STATE has" in msg
        with disk.mount("COS_STATE", readonly=True) as state:
            assert sorted(p.name for p in (state / "cOS").iterdir()) == ["active.img"]


def test_duplicate_labels(world, tmp_path: Path) -> None:
    """Two partitions labelled COS_STATE: an error naming both devices."""
    from reconciler.sandbox.disk import SandboxDisk, fake_host_root

    with SandboxDisk(tmp_path / "disk", state_mib=64, persistent_mib=32,
                     extra_labels=["COS_STATE"]) as disk:
        m = Machine(disk, fake_host_root(tmp_path / "host", mode="active"),
                    tmp_path / "upgrade.yaml", world)
        m.write_config(world.v1.reference)
        res = m.reconcile(accept=(int(ExitCode.SYSTEM),))
        msg = one_error(res.stderr.decode())
        assert msg.count(disk.device) == 2


def test_missing_state_partition(machine: Machine) -> None:
    """A disk without COS_STATE is not a cOS system: the system-layout exit code."""
    machine.write_config(machine.world.v1.reference)
    oem = machine.disk.partitions["COS_OEM"]
    res = machine.reconcile("--disk", oem, accept=(int(ExitCode.SYSTEM),))
    assert "no partition labelled COS_STATE" in one_error(res.stderr.decode())


def test_second_concurrent_run_gets_lock_held(machine: Machine) -> None:
    """While another run holds the lock, a second one waits its bound and exits lock-held."""
    machine.write_config(machine.world.v1.reference)
    lock_path = machine.host_root / "run/cos-reconciler.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert "holds" in check_refused(machine, ExitCode.LOCK_HELD)
    finally:
        os.close(fd)


def test_usage_error_is_not_the_changed_code(machine: Machine) -> None:
    """A bad flag exits with the usage code (64), never 2."""
    res = machine.reconcile("plan", "--no-such-flag", accept=(int(ExitCode.USAGE),))
    assert "unrecognized arguments" in res.stderr.decode()
