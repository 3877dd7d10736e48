"""mount, umount and findmnt: where a device is mounted, and mounting it when it is not."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.tools._run import run


def mountpoints(device: str) -> list[Path]:
    """Where `device` is mounted now (empty when it is not)."""
    res = run(["findmnt", "-J", "-n", "-o", "TARGET,SOURCE,OPTIONS", "-S", device], accept=(0, 1))
    if res.returncode != 0 or not res.text.strip():
        return []
    return [Path(fs["target"]) for fs in json.loads(res.text).get("filesystems", [])]


def all_mounts() -> list[tuple[Path, str]]:
    """Every mount as (target, source)."""
    res = run(["findmnt", "-J", "-l", "-o", "TARGET,SOURCE"])
    return [(Path(fs["target"]), fs["source"] or "")
            for fs in json.loads(res.text).get("filesystems", [])]


def is_readonly(target: Path) -> bool:
    """Whether the filesystem mounted at `target` is read-only."""
    res = run(["findmnt", "-J", "-n", "-o", "OPTIONS", "-M", str(target)])
    options = json.loads(res.text)["filesystems"][0]["options"].split(",")
    return "ro" in options


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
