"""Read-only observation of the system: partitions by label, booted slot, slot images, record."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler import staterecord
from reconciler.errors import SystemLayoutError
from reconciler.tools import blockdev, mount

STATE_LABEL = "COS_STATE"
OPTIONAL_LABELS = ("COS_RECOVERY", "COS_OEM", "COS_PERSISTENT")
SLOT_FILES = {"active": "cOS/active.img", "passive": "cOS/passive.img"}
RECOVERY_FILE = "cOS/recovery.img"
TRANSITION_FILE = "cOS/transition.img"
PASSIVE_PENDING_FILE = "cOS/passive.img.pending"
BOOT_MODES = ("active", "passive", "recovery")
# Private mount points are named PREFIX + owner pid, so apply.release_stale_mounts can tell
# the ones a killed run left behind.
MOUNT_PREFIX = "cos-reconciler-mnt-"
NEW_IMAGE_PREFIX = "cos-reconciler-new-"


@dataclass(frozen=True)
class Slot:
    """One slot image as found on disk, with what the record says about it."""

    name: str
    file: str
    present: bool
    label: str | None = None
    fs_uuid: str | None = None
    image: str | None = None
    digest: str | None = None
    date: str | None = None
    verified: str | None = None

    def to_json(self) -> dict[str, object]:
        """The slot as shown by `plan --json` and `status --json`."""
        return {"file": self.file, "present": self.present, "label": self.label,
                "fs_uuid": self.fs_uuid, "image": self.image, "digest": self.digest,
                "date": self.date, "verified": self.verified}


@dataclass(frozen=True)
class Observed:
    """Everything the planner needs to know about the system, gathered without changes."""

    partitions: Mapping[str, str]
    boot_mode: str
    slots: Mapping[str, Slot]
    leftovers: tuple[str, ...] = ()

    @property
    def state_device(self) -> str:
        return self.partitions[STATE_LABEL]


def find_partitions(disk: str | None) -> dict[str, str]:
    """Map each cOS label to its one device; duplicates and a missing COS_STATE are errors."""
    wanted = (STATE_LABEL, *OPTIONAL_LABELS)
    found: dict[str, list[str]] = {label: [] for label in wanted}
    for info in blockdev.probe(blockdev.list_devices(disk)):
        if info.label in found:
            found[info.label].append(info.device)
    for label, devices in found.items():
        if len(devices) > 1:
            raise SystemLayoutError(
                f"label {label} is carried by {len(devices)} devices: {', '.join(devices)}",
                hint="remove or relabel the extra one (multipath or a second disk?), or pass "
                     "--disk DEVICE to choose the disk to manage")
    if not found[STATE_LABEL]:
        where = f"on {disk}" if disk else "on any block device"
        raise SystemLayoutError(
            f"no partition labelled {STATE_LABEL} {where}",
            hint="is this a cOS/Elemental system? pass --disk DEVICE to name the installed disk")
    return {label: devs[0] for label, devs in found.items() if devs}


_MODE_ARG = re.compile(r"(?:^|\s)elemental\.mode=(\w+)")
_IMG_ARG = re.compile(r"(?:^|\s)cos-img/filename=\S*/(active|passive|recovery)\.(?:img|squashfs)")


def boot_mode(host_root: Path) -> str:
    """active, passive or recovery from the initrd markers or kernel command line; else live."""
    for base in ("run/cos", "run/elemental"):
        for mode in BOOT_MODES:
            if (host_root / base / f"{mode}_mode").exists():
                return mode
    try:
        cmdline = (host_root / "proc/cmdline").read_text()
    except OSError:
        cmdline = ""
    for pattern in (_MODE_ARG, _IMG_ARG):
        match = pattern.search(cmdline)
        if match and match.group(1) in BOOT_MODES:
            return match.group(1)
    return "live"


@contextlib.contextmanager
def mounted(device: str, *, writable: bool) -> Iterator[Path]:
    """The mount point of `device`: its existing mount (remounted rw if asked), or a private one."""
    existing = mount.mounts_of(device)
    if existing:
        target, was_ro = existing[0].target, existing[0].readonly
        if writable and was_ro:
            mount.remount(target, readonly=False)
        try:
            yield target
        finally:
            if writable and was_ro:
                mount.remount(target, readonly=True)
        return
    with tempfile.TemporaryDirectory(prefix=f"{MOUNT_PREFIX}{os.getpid()}-") as tmp:
        target = Path(tmp)
        mount.mount(device, target, options="rw" if writable else "ro")
        try:
            yield target
        finally:
            mount.umount(target)


def read_slots(state_root: Path, recovery_root: Path | None) -> dict[str, Slot]:
    """Identify each slot image by its own filesystem UUID and match it to the record."""
    record = staterecord.read(state_root) or staterecord.StateRecord()
    files = {name: state_root / rel for name, rel in SLOT_FILES.items()}
    if recovery_root is not None:
        files["recovery"] = recovery_root / RECOVERY_FILE
    present = {name: path for name, path in files.items() if path.is_file()}
    infos = {Path(i.device): i for i in blockdev.probe(list(present.values()))}
    slots: dict[str, Slot] = {}
    for name, path in files.items():
        if name not in present:
            slots[name] = Slot(name, str(path.relative_to(path.parents[1])), False)
            continue
        info = infos.get(path) or blockdev.FsInfo(str(path), None, None, None)
        entry = record.by_uuid(info.uuid)
        slots[name] = Slot(
            name=name, file=str(path.relative_to(path.parents[1])), present=True,
            label=info.label, fs_uuid=info.uuid,
            image=entry.source if entry else None, digest=entry.digest if entry else None,
            date=entry.date if entry else None, verified=entry.verified if entry else None)
    return slots


def marker_path(image: Path) -> Path:
    """The completion marker the write step leaves beside a finished transition image."""
    return image.with_name(image.name + ".done")


def leftovers(state_root: Path) -> tuple[str, ...]:
    """Files an interrupted run left behind (resumed or cleaned up by the next apply)."""
    found = []
    transition = state_root / TRANSITION_FILE
    if transition.exists() and not marker_path(transition).exists():
        found.append(TRANSITION_FILE)
    if (state_root / PASSIVE_PENDING_FILE).exists():
        found.append(PASSIVE_PENDING_FILE)
    return tuple(found)


def observe(*, host_root: Path, disk: str | None, with_recovery: bool = True) -> Observed:
    """Gather the observed state (mounts COS_STATE read-only if nobody has)."""
    partitions = find_partitions(disk)
    mode = boot_mode(host_root)
    with mounted(partitions[STATE_LABEL], writable=False) as state_root:
        recovery_dev = partitions.get("COS_RECOVERY") if with_recovery else None
        if recovery_dev:
            with mounted(recovery_dev, writable=False) as recovery_root:
                slots = read_slots(state_root, recovery_root)
        else:
            slots = read_slots(state_root, None)
        left = leftovers(state_root)
    return Observed(partitions=partitions, boot_mode=mode, slots=slots, leftovers=left)
