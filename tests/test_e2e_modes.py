"""End to end: boot modes (passive fallback, live medium), the upstream `upgrade` shape,
the recovery image, and a run killed in the middle of writing."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from reconciler.errors import ExitCode
from reconciler.tools import blockdev, mount
from reconciler.tools._run import Background, run
from tests.conftest import RECONCILE, Machine

pytestmark = pytest.mark.needs_root


def slot(machine: Machine, name: str) -> dict[str, object]:
    doc: dict[str, object] = machine.status()["slots"][name]
    return doc


def test_booted_from_passive_keeps_the_last_known_good(machine: Machine) -> None:
    """After a fallback boot into passive, an upgrade replaces active and leaves passive."""
    from reconciler.sandbox.disk import fake_host_root

    world = machine.world
    machine.write_config(world.v1.reference)
    machine.reconcile(accept=(0,))
    passive_before = slot(machine, "passive")
    machine.host_root = fake_host_root(machine.host_root.parent, mode="passive")
    assert machine.status()["boot_mode"] == "passive"
    machine.write_config(world.v2.reference)
    plan = machine.reconcile("plan", accept=(0,)).text
    assert "last known good" in plan
    machine.reconcile(accept=(0,))
    assert slot(machine, "active")["digest"] == world.v2.digest
    assert slot(machine, "passive") == passive_before


def test_live_medium_upgrades_the_installed_disk(machine: Machine) -> None:
    """With no boot marker (a live medium) the installed disk is still reconciled."""
    from reconciler.sandbox.disk import fake_host_root

    machine.host_root = fake_host_root(machine.host_root.parent, mode=None)
    assert machine.status()["boot_mode"] == "live"
    machine.write_config(machine.world.v1.reference)
    machine.reconcile(accept=(0,))
    assert slot(machine, "active")["digest"] == machine.world.v1.digest


def test_upgrade_docker_image_no_verify_like_elemental(machine: Machine) -> None:
    """`upgrade --docker-image IMG --no-verify` installs IMG and records it as unverified."""
    machine.config = machine.config.with_name("absent.yaml")
    res = machine.reconcile("upgrade", "--docker-image", machine.world.v1.reference,
                            "--no-verify", "--tls-verify=false", accept=(0,))
    assert "DISABLED" in res.stderr.decode()
    active = slot(machine, "active")
    assert active["digest"] == machine.world.v1.digest
    assert str(active["verified"]).startswith("no")


def test_upgrade_without_keys_needs_an_explicit_opt_out(machine: Machine) -> None:
    """Verification is on by default: no key and no --no-verify is a config error."""
    machine.config = machine.config.with_name("absent.yaml")
    res = machine.reconcile("upgrade", "--docker-image", machine.world.v1.reference,
                            accept=(int(ExitCode.CONFIG),))
    assert "--no-verify" in res.stderr.decode()


def test_upgrade_uses_the_config_trust_settings(machine: Machine) -> None:
    """With a config present, `upgrade --docker-image` verifies with its keys."""
    machine.write_config(machine.world.v1.reference)
    machine.reconcile("upgrade", "--docker-image", machine.world.v2.reference, accept=(0,))
    assert slot(machine, "active")["verified"] == "gpg"


def test_recovery_image_is_reconciled_too(world, tmp_path: Path) -> None:
    """A `recovery:` image is written to COS_RECOVERY as recovery.img labelled COS_SYSTEM."""
    from reconciler.sandbox.disk import SandboxDisk, fake_host_root

    with SandboxDisk(tmp_path / "disk", state_mib=200, persistent_mib=64,
                     recovery_mib=128) as disk:
        m = Machine(disk, fake_host_root(tmp_path / "host", mode="active"),
                    tmp_path / "upgrade.yaml", world)
        m.write_config(world.v2.reference, extra={"recovery": {"image": world.v1.reference}})
        m.reconcile(accept=(0,))
        recovery = slot(m, "recovery")
        assert recovery["digest"] == world.v1.digest
        assert recovery["label"] == "COS_SYSTEM"
        assert slot(m, "active")["digest"] == world.v2.digest
        assert "No changes" in m.reconcile(accept=(0,)).text


def _unpacking() -> bool:
    return any(t.name.startswith("cos-reconciler-new-") for t, _ in mount.all_mounts())


@pytest.mark.parametrize("moment", ["allocating", "unpacking"])
def test_run_killed_while_writing_then_rerun_converges(machine: Machine, tmp_path: Path,
                                                       moment: str) -> None:
    """SIGKILL during the write step (while the image file is made, or while layers are
    unpacked into it) never touches active.img; the next run converges."""
    world = machine.world
    factory = slot(machine, "active")
    machine.write_config(world.v1.reference)
    argv = [RECONCILE, "--config", str(machine.config), "--disk", machine.disk.device,
            "--host-root", str(machine.host_root), "apply"]
    # COS_STATE stays mounted, as on a booted system, so the run uses this very mount.
    with machine.disk.mount("COS_STATE") as state:
        proc = Background(argv, log_path=tmp_path / "killed.log")
        killed = False
        deadline = time.monotonic() + 120
        try:
            while proc.alive() and time.monotonic() < deadline:
                assert (state / "cOS/active.img").is_file(), "active.img missing mid-run"
                if (state / "cOS/transition.img").exists() and (
                        moment == "allocating" or _unpacking()):
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.002)
        finally:
            proc.stop()
        assert killed, "the run finished before it could be killed"
        assert not (state / "cOS/transition.img.done").exists()
        image = state / "cOS/active.img"
        run(["e2fsck", "-fn", str(image)])
        assert blockdev.probe([image])[0].uuid == factory["fs_uuid"]
        assert "cOS/transition.img" in machine.status()["interrupted_run_leftovers"]
        assert slot(machine, "active")["fs_uuid"] == factory["fs_uuid"]

    machine.reconcile(accept=(0,))
    assert not [t for t, _ in mount.all_mounts() if t.name.startswith("cos-reconciler-")]
    assert slot(machine, "active")["digest"] == world.v1.digest
    assert slot(machine, "passive")["fs_uuid"] == factory["fs_uuid"]
    assert machine.status()["interrupted_run_leftovers"] == []
    assert "No changes" in machine.reconcile(accept=(0,)).text


def test_the_named_opt_out_is_visible_everywhere(machine: Machine) -> None:
    """verification.policy: insecure-accept-anything is warned about on every run and shown
    by plan, status and the slot's record."""
    machine.write_config(machine.world.v1.reference,
                         verification={"policy": "insecure-accept-anything"})
    plan = json.loads(machine.reconcile("plan", "--json", accept=(0,)).stdout)
    assert plan["verification"].startswith("DISABLED")
    res = machine.reconcile(accept=(0,))
    assert "signature verification is DISABLED" in res.stderr.decode()
    status = machine.status()
    assert status["verification"].startswith("DISABLED")
    assert str(status["slots"]["active"]["verified"]).startswith("no")
