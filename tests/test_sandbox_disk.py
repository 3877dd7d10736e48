"""The sandbox disk: a cOS-like GPT disk on a loop device that always cleans up after itself."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from reconciler.sandbox.disk import SandboxDisk, fake_host_root
from reconciler.tools._run import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mounts)")


def _label(device: str) -> str:
    return run(["blkid", "-p", "-s", "LABEL", "-o", "value", device]).text.strip()


def _loops_on(path: Path) -> list[str]:
    """Loop devices backed by `path` or by files under its directory."""
    out = run(["losetup", "-n", "-O", "NAME,BACK-FILE", "--raw"]).text.splitlines()
    return [line for line in out if str(path.parent) in line]


def _mounts_under(path: Path) -> list[str]:
    targets = run(["findmnt", "-rn", "-o", "TARGET"]).text.splitlines()
    return [t for t in targets if t.startswith(str(path))]


def _partitions(device: str) -> list[str]:
    name = os.path.basename(device)
    return [line.split()[-1] for line in Path("/proc/partitions").read_text().splitlines()[2:]
            if line.split()[-1].startswith(name + "p")]


def test_disk_has_cos_labels_and_goes_away(tmp_path: Path) -> None:
    """The four COS_* labels are on the disk's partitions; nothing is left after exit."""
    with SandboxDisk(tmp_path, recovery_mib=64) as disk:
        assert sorted(disk.partitions) == ["COS_OEM", "COS_PERSISTENT", "COS_RECOVERY",
                                           "COS_STATE"]
        for label, device in disk.partitions.items():
            assert device.startswith(disk.device + "p")
            assert _label(device) == label
        device = disk.device
    assert _loops_on(tmp_path / "disk.img") == []
    assert _mounts_under(tmp_path) == []
    assert _partitions(device) == []


def test_default_disk_has_no_recovery(tmp_path: Path) -> None:
    """Without recovery_mib there is no COS_RECOVERY partition."""
    with SandboxDisk(tmp_path) as disk:
        assert sorted(disk.partitions) == ["COS_OEM", "COS_PERSISTENT", "COS_STATE"]


def test_recovery_and_extra_labels(tmp_path: Path) -> None:
    """recovery_mib adds COS_RECOVERY; extra_labels add duplicate-label partitions."""
    with SandboxDisk(tmp_path, recovery_mib=64, extra_labels=("COS_STATE",)) as disk:
        labels = [label for label, _ in disk.all_partitions]
        assert labels == ["COS_OEM", "COS_RECOVERY", "COS_STATE", "COS_PERSISTENT", "COS_STATE"]
        assert [_label(dev) for _, dev in disk.all_partitions] == labels
        assert disk.partitions["COS_STATE"] == disk.all_partitions[2][1]


def test_factory_active_image(tmp_path: Path) -> None:
    """COS_STATE holds /cOS/active.img, labelled COS_ACTIVE, with a factory os-release."""
    with SandboxDisk(tmp_path) as disk, disk.mount("COS_STATE", readonly=True) as state:
        image = state / "cOS" / "active.img"
        assert run(["blkid", "-p", "-s", "LABEL", "-o", "value", str(image)]).text.strip() \
            == "COS_ACTIVE"
        with disk.mount_image(image) as root:
            release = (root / "etc/os-release").read_text()
        assert 'IMAGE="factory:factory"' in release and 'IMAGE_TAG="factory"' in release
    assert _loops_on(tmp_path / "disk.img") == []


def test_no_factory(tmp_path: Path) -> None:
    """With factory=False COS_STATE is empty."""
    with SandboxDisk(tmp_path, factory=False) as disk, disk.mount("COS_STATE") as state:
        assert sorted(p.name for p in state.iterdir()) == ["lost+found"]


def test_exit_cleans_up_leaked_mounts_and_loops(tmp_path: Path) -> None:
    """Mounts and loop devices left by the code under test are removed on exit."""
    leaked = tmp_path / "leaked"
    with SandboxDisk(tmp_path / "disk") as disk:
        for sub in ("state", "active"):
            (leaked / sub).mkdir(parents=True)
        run(["mount", disk.partitions["COS_STATE"], str(leaked / "state")])
        image = leaked / "state/cOS/active.img"
        run(["mount", "-o", "loop", str(image), str(leaked / "active")])
        run(["mount", disk.partitions["COS_OEM"], str(leaked / "active/tmp")])
        run(["losetup", "-f", "--show", str(image)])
        device = disk.device
    assert _mounts_under(tmp_path) == []
    assert not [line for line in run(["losetup", "-a"]).text.splitlines()
                if str(tmp_path) in line or "cOS/active.img" in line]
    assert _partitions(device) == []


def test_failed_setup_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If creating the disk fails midway, the loop device is still detached."""
    def boom(self: SandboxDisk) -> None:
        raise RuntimeError("factory failed")

    monkeypatch.setattr(SandboxDisk, "_install_factory", boom)
    disk = SandboxDisk(tmp_path)
    with pytest.raises(RuntimeError), disk:
        pass
    assert _loops_on(tmp_path / "disk.img") == []


def test_exception_in_block_still_cleans_up(tmp_path: Path) -> None:
    """An exception inside `with disk.mount(...)` unmounts and detaches everything."""
    with pytest.raises(RuntimeError), SandboxDisk(tmp_path) as disk, \
            contextlib.ExitStack() as stack:
        stack.enter_context(disk.mount("COS_PERSISTENT"))
        raise RuntimeError("test failure")
    assert _mounts_under(tmp_path) == []
    assert _loops_on(tmp_path / "disk.img") == []


@pytest.mark.parametrize("mode", ["active", "passive", "recovery"])
def test_fake_host_root_modes(tmp_path: Path, mode: str) -> None:
    """The fake host names the booted image on its cmdline and leaves the mode marker."""
    root = fake_host_root(tmp_path, mode=mode)
    cmdline = (root / "proc/cmdline").read_text()
    assert f"elemental.mode={mode}" in cmdline
    assert f"cos-img/filename=/cOS/{mode}.img" in cmdline
    assert (root / f"run/cos/{mode}_mode").exists()
    assert sorted(p.name for p in (root / "run/cos").iterdir()) == [f"{mode}_mode"]


def test_fake_host_root_live(tmp_path: Path) -> None:
    """A live medium has no cos-img on its cmdline and no mode marker."""
    root = fake_host_root(tmp_path, mode=None)
    assert "cos-img" not in (root / "proc/cmdline").read_text()
    assert not (root / "run/cos").exists()
    with pytest.raises(ValueError):
        fake_host_root(tmp_path, mode="bogus")
