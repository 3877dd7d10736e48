"""Block devices and filesystem identities: sysfs for the device list, blkid for labels.

`blkid -c /dev/null` probes the named devices or image files themselves, all in one call, so
the system's blkid cache is neither trusted nor written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import SystemLayoutError
from reconciler.tools._run import run

SYS_BLOCK = Path("/sys/class/block")


@dataclass(frozen=True)
class FsInfo:
    """What blkid found on one device or image file."""

    device: str
    label: str | None
    uuid: str | None
    fstype: str | None


def list_devices(disk: str | None = None) -> list[str]:
    """Paths of every block device (or of `disk` and its partitions), read from sysfs."""
    if disk is None:
        return [f"/dev/{entry.name}" for entry in sorted(SYS_BLOCK.iterdir())
                if (entry / "dev").exists()]
    name = Path(disk).resolve().name
    node = SYS_BLOCK / name
    if not Path(disk).exists() or not node.exists():
        raise SystemLayoutError(f"{disk} is not a block device",
                                hint="pass the installed disk, e.g. --disk /dev/sda")
    found = [f"/dev/{name}"]
    if not (node / "partition").exists():
        found += [f"/dev/{child.name}" for child in sorted(node.iterdir())
                  if child.name.startswith(name) and (child / "partition").exists()]
    return found


def probe(paths: Sequence[str | Path]) -> list[FsInfo]:
    """Probe each device or image file (no cache); ones without a filesystem are left out."""
    if not paths:
        return []
    res = run(["blkid", "-c", os.devnull, "-o", "export", *map(str, paths)], accept=(0, 2))
    infos: list[FsInfo] = []
    for block in res.text.split("\n\n"):
        fields = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        if "DEVNAME" in fields:
            infos.append(FsInfo(fields["DEVNAME"], fields.get("LABEL"), fields.get("UUID"),
                                fields.get("TYPE")))
    return infos
