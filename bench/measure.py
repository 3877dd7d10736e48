"""Timing primitives: cold caches, wall and CPU time, peak RSS of a process and its children."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from reconciler.errors import ToolFailed
from reconciler.tools._run import Background, run

WRAPPER = Path(__file__).resolve().parent / "_rusage.py"
RECONCILE = Path(sys.executable).parent / "reconcile"
SAMPLE_S = 0.02


def drop_caches() -> None:
    """Write back dirty data and empty the page cache, so no contender reads from memory."""
    os.sync()
    with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as knob:
        knob.write("3\n")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Timed:
    """Wall time and the CPU time of every process waited for inside the block."""

    wall_s: float = 0.0
    cpu_s: float = 0.0


@contextlib.contextmanager
def timed() -> Iterator[Timed]:
    result = Timed()
    cpu = _children_cpu()
    start = time.monotonic()
    try:
        yield result
    finally:
        result.wall_s = time.monotonic() - start
        result.cpu_s = _children_cpu() - cpu


@dataclass
class ProcessUsage:
    """What one measured reconcile run cost."""

    exit: int
    wall_s: float
    cpu_s: float
    self_mb: float
    children_mb: float          # largest VmHWM of any descendant, sampled
    children_rusage_mb: float   # RUSAGE_CHILDREN ru_maxrss (floored by the parent's RSS)
    log: str = field(repr=False, default="")
    started_at: float = 0.0     # wall clock (time.time()) at launch
    ended_at: float = 0.0


def _session_members(session: int, min_pid: int) -> list[int]:
    """Processes in `session` (the wrapper is its leader), newer than it."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) <= min_pid:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            found.append(int(name))
    return found


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(args: Sequence[str], workdir: Path, *, name: str,
                 sample: bool = True) -> ProcessUsage:
    """Run `reconcile ARGS` via the rusage wrapper; with `sample`, watch its children's RSS.

    Sampling (a scan of /proc every 20 ms) is left out for the sub-second no-op runs.
    """
    out = workdir / f"{name}.rusage.json"
    log_path = workdir / f"{name}.log"
    out.unlink(missing_ok=True)
    log_path.unlink(missing_ok=True)
    cpu = _children_cpu()
    started_at = time.time()
    start = time.monotonic()
    proc = Background([sys.executable, str(WRAPPER), str(out), *args], log_path=log_path)
    children_kb = 0
    try:
        pidfd = os.pidfd_open(proc.pid)
        try:
            while True:
                ready, _, _ = select.select([pidfd], [], [], SAMPLE_S if sample else None)
                if ready:
                    break
                for pid in _session_members(proc.pid, proc.pid):
                    children_kb = max(children_kb, _hwm_kb(pid))
        finally:
            os.close(pidfd)
        wall = time.monotonic() - start
        while proc.alive():  # reap it (it has exited: this returns at once)
            time.sleep(0.001)
    except BaseException:
        proc.stop()
        raise
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    try:
        doc = json.loads(out.read_text())
    except (OSError, ValueError) as err:
        raise ToolFailed(f"reconcile {name} left no usage report: {log[-2000:]}",
                         argv=proc.argv, returncode=-1, stderr=log) from err
    return ProcessUsage(
        exit=int(doc["exit"]), wall_s=wall, cpu_s=_children_cpu() - cpu,
        self_mb=doc["self_maxrss_kb"] / 1024, children_mb=children_kb / 1024,
        children_rusage_mb=doc["children_maxrss_kb"] / 1024, log=log,
        started_at=started_at, ended_at=started_at + wall)


def run_quick(argv: Sequence[str], *, accept: Sequence[int] = (0,)) -> float:
    """Wall time of one short command (no sampling, no cache dropping)."""
    start = time.monotonic()
    run(argv, accept=accept)
    return time.monotonic() - start


def phases(usage: ProcessUsage) -> dict[str, float]:
    """Seconds per phase of an apply, from its JSON log: start-up (process start to the first
    step: imports, probe, resolve), then each step by action; the last step's time runs to
    the process's exit (recording, cache pruning, unmounting)."""
    marks: list[tuple[float, str]] = []
    for line in usage.log.splitlines():
        try:
            event = json.loads(line)
            stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if event.get("event") == "step" and "action" in event:
            marks.append((stamp.timestamp(), str(event["action"])))
    if not marks:
        return {}
    out = {"startup": marks[0][0] - usage.started_at}
    ends = [t for t, _ in marks[1:]] + [usage.ended_at]
    for (begin, action), end in zip(marks, ends, strict=True):
        out[action] = out.get(action, 0.0) + end - begin
    return {k: round(max(v, 0.0), 3) for k, v in out.items()}
