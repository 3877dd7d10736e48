"""Block devices and filesystem identities: lsblk for the device list, blkid -p for labels.

`blkid -p` probes the device or image file itself, so the system's blkid cache is neither
trusted nor written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.tools._run import run


@dataclass(frozen=True)
class FsInfo:
    """What blkid found on one device or image file."""

    device: str
    label: str | None
    uuid: str | None
    fstype: str | None


def list_devices(disk: str | None = None) -> list[str]:
    """Paths of every block device (or of `disk` and its partitions)."""
    argv = ["lsblk", "-J", "-p", "-o", "PATH,TYPE"]
    if disk:
        argv.append(disk)
    out = json.loads(run(argv, hint="is the --disk argument a block device?").text)
    found: list[str] = []

    def walk(nodes: Sequence[dict[str, object]]) -> None:
        for node in nodes:
            path = node.get("path")
            if isinstance(path, str):
                found.append(path)
            children = node.get("children")
            if isinstance(children, list):
                walk(children)

    walk(out.get("blockdevices", []))
    if disk:
        # lsblk may not nest partitions without udev: add them from sysfs.
        name = Path(disk).resolve().name
        sys_dir = Path("/sys/block") / name
        if sys_dir.is_dir():
            for child in sorted(sys_dir.iterdir()):
                if child.name.startswith(name) and (child / "partition").exists():
                    dev = f"/dev/{child.name}"
                    if dev not in found:
                        found.append(dev)
    return found


def probe(paths: Sequence[str | Path]) -> list[FsInfo]:
    """Low-level probe of each device or image file (no cache); unreadable ones are skipped."""
    infos: list[FsInfo] = []
    for path in paths:
        res = run(["blkid", "-p", "-o", "export", str(path)], accept=(0, 2))
        fields: dict[str, str] = {}
        for line in res.text.splitlines():
            key, _, value = line.partition("=")
            fields[key] = value
        infos.append(FsInfo(str(path), fields.get("LABEL"), fields.get("UUID"),
                            fields.get("TYPE")))
    return infos
