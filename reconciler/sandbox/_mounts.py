"""Find and tear down the mounts and loop devices that hang off a set of block devices."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from reconciler import logs
from reconciler.tools._run import run

log = logs.get_logger(__name__)


@dataclass(frozen=True)
class LoopDevice:
    """One attached loop device and the device number of the filesystem holding its file."""

    name: str
    back_file: str
    back_dev: tuple[int, int] | None


@dataclass(frozen=True)
class Mount:
    """One line of the mount table."""

    target: str
    source: str
    dev: tuple[int, int] | None


def _majmin(text: str | None) -> tuple[int, int] | None:
    if not text or ":" not in text:
        return None
    major, minor = text.strip().split(":", 1)
    try:
        return int(major), int(minor)
    except ValueError:
        return None


def device_number(path: str) -> tuple[int, int] | None:
    """(major, minor) of a block device node, or None if it is gone."""
    try:
        rdev = os.stat(path).st_rdev
    except OSError:
        return None
    return os.major(rdev), os.minor(rdev)


def loop_devices() -> list[LoopDevice]:
    """Every attached loop device (from `losetup -J`)."""
    out = run(["losetup", "-J", "-O", "NAME,BACK-FILE,BACK-MAJ:MIN"]).text
    if not out.strip():
        return []
    rows = json.loads(out).get("loopdevices", [])
    return [LoopDevice(r["name"], r.get("back-file") or "", _majmin(r.get("back-maj:min")))
            for r in rows]


def mounts() -> list[Mount]:
    """Every mount of this mount namespace (from `findmnt -J`)."""
    out = run(["findmnt", "-J", "-l", "-o", "TARGET,SOURCE,MAJ:MIN"]).text
    rows = json.loads(out).get("filesystems", [])
    return [Mount(r["target"], r.get("source") or "", _majmin(r.get("maj:min"))) for r in rows]


def loops_backed_by(devs: set[tuple[int, int]]) -> list[LoopDevice]:
    """Loop devices whose backing file lives on one of `devs` (and, recursively, on those)."""
    found: dict[str, LoopDevice] = {}
    wanted = set(devs)
    while True:
        new = [lo for lo in loop_devices()
               if lo.back_dev in wanted and lo.name not in found]
        if not new:
            return list(found.values())
        for lo in new:
            found[lo.name] = lo
            number = device_number(lo.name)
            if number is not None:
                wanted.add(number)


def unmount(target: str, *, lazy: bool = True) -> bool:
    """Unmount `target`; if busy, detach it lazily (when `lazy`) or report False."""
    result = run(["umount", target], accept=range(256))
    if result.returncode == 0:
        return True
    if not lazy:
        return False
    log.warning("umount failed, detaching lazily", target=target,
                stderr=result.stderr.decode("utf-8", "replace").strip())
    run(["umount", "-l", target], accept=range(256))
    return True


def detach(loop: str) -> None:
    """Detach a loop device (a busy one is flagged to go away when its last user does)."""
    run(["losetup", "-d", loop], accept=range(256))


def teardown(devs: set[tuple[int, int]], sources: set[str]) -> None:
    """Unmount everything on `devs`/`sources` or on loops backed by files there; detach those.

    Mounts go deepest first; a mount kept busy by a loop device backed by a file on it is
    retried once those loops are detached, and only then detached lazily.
    """
    nested = loops_backed_by(devs)
    numbers = set(devs)
    names = set(sources)
    for lo in nested:
        names.add(lo.name)
        number = device_number(lo.name)
        if number is not None:
            numbers.add(number)
    victims = sorted({m.target for m in mounts() if m.dev in numbers or m.source in names},
                     key=len, reverse=True)
    busy = [target for target in victims if not unmount(target, lazy=False)]
    for lo in reversed(nested):
        detach(lo.name)
    # The kernel frees a detached loop asynchronously; until then it keeps its file busy.
    deadline = time.monotonic() + 5
    while nested and busy and time.monotonic() < deadline:
        time.sleep(0.05)
        nested = loops_backed_by(devs)
    while busy:
        still = [target for target in busy if not unmount(target, lazy=False)]
        if len(still) == len(busy):
            break
        busy = still
    for target in busy:
        unmount(target)
