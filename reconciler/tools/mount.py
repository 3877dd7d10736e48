"""mount and umount, and where a device is mounted (from /proc/self/mountinfo)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.tools._run import run

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo."""

    target: Path
    source: str
    devno: str           # "major:minor" of the mounted filesystem
    readonly: bool
    root: str = "/"      # the directory of the filesystem mounted there (bind mounts)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def table(mountinfo: Path = MOUNTINFO) -> list[MountEntry]:
    """Every mount of this process's namespace, read from the kernel's own table."""
    entries = []
    for line in mountinfo.read_text().splitlines():
        fields = line.split(" ")
        sep = fields.index("-")
        entries.append(MountEntry(target=Path(_unescape(fields[4])),
                                  source=_unescape(fields[sep + 2]), devno=fields[2],
                                  readonly="ro" in fields[5].split(","),
                                  root=_unescape(fields[3])))
    return entries


def mounts_of(device: str) -> list[MountEntry]:
    """The mounts of the whole filesystem on block device `device` (empty when none)."""
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return []
    devno = f"{os.major(rdev)}:{os.minor(rdev)}"
    return [m for m in table() if m.devno == devno and m.root == "/"]


def mountpoints(device: str) -> list[Path]:
    """Where the block device `device` is mounted now (empty when it is not)."""
    return [m.target for m in mounts_of(device)]


def all_mounts() -> list[tuple[Path, str]]:
    """Every mount as (target, source)."""
    return [(m.target, m.source) for m in table()]


def mount(source: str | Path, target: Path, *, options: str = "", fstype: str = "") -> None:
    """Mount `source` on `target`."""
    argv = ["mount"]
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", options]
    run([*argv, str(source), str(target)])


def remount(target: Path, *, readonly: bool) -> None:
    """Switch the mount at `target` between read-only and read-write."""
    run(["mount", "-o", f"remount,{'ro' if readonly else 'rw'}", str(target)])


def umount(target: Path, *, lazy: bool = False) -> None:
    """Unmount `target`."""
    run(["umount", *(["-l"] if lazy else []), str(target)])
