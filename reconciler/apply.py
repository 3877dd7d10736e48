"""Run a plan: take the lock, observe, plan, and execute exactly the planned steps."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import lock, logs, probe, resolve, staterecord
from reconciler.config import Desired
from reconciler.errors import SystemLayoutError
from reconciler.plan import Action, Plan, Step, make_plan
from reconciler.tools import loop, mount

if TYPE_CHECKING:
    from reconciler.steps.context import Context

log = logs.get_logger(__name__)

CACHE_SUBDIR = ".cos-reconciler/oci"
_OWNED = re.compile(rf"^(?:{probe.MOUNT_PREFIX}|{probe.NEW_IMAGE_PREFIX})(\d+)-")


def executors() -> dict[Action, Callable[[Context, Step], None]]:
    """The function that carries out each action (imported only when there is work)."""
    from reconciler.steps import fetch, promote, verify, write  # noqa: PLC0415

    return {Action.CLEANUP: promote.cleanup, Action.VERIFY: verify.verify,
            Action.FETCH: fetch.fetch, Action.WRITE: write.write,
            Action.PROMOTE: promote.promote}


@dataclass(frozen=True)
class Outcome:
    """The plan that was computed, and whether it was carried out."""

    plan: Plan
    applied: bool


def compute(desired: Desired, *, host_root: Path, disk: str | None) -> tuple[probe.Observed, Plan]:
    """Observe the system and compute the plan (no changes)."""
    observed = probe.observe(host_root=host_root, disk=disk,
                             with_recovery=desired.recovery is not None)
    digests = resolve.resolve_all(desired)
    return observed, make_plan(desired, observed, digests)


def apply(desired: Desired, *, host_root: Path, disk: str | None) -> Outcome:
    """Converge the system to `desired`; a converged system is left alone."""
    with lock.held(host_root, desired.lock_timeout_s):
        release_stale_mounts()
        observed, plan = compute(desired, host_root=host_root, disk=disk)
        if not plan.changes:
            log.debug("no changes: the system matches the desired state")
            return Outcome(plan, applied=False)
        run_step = executors()
        with _context(desired, observed, plan) as ctx:
            for number, step in enumerate(plan.steps, 1):
                log.info("step", n=number, of=len(plan.steps), action=str(step.action),
                         target=step.target, image=step.image)
                run_step[step.action](ctx, step)
            _prune(ctx)
        log.info("applied", steps=len(plan.steps))
        return Outcome(plan, applied=True)


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def release_stale_mounts() -> None:
    """Unmount what a killed run left mounted (only our private mount points, and only those
    whose owner process is gone) and detach the loop devices behind them."""
    stale = [(t, s) for t, s in mount.all_mounts()
             if (m := _OWNED.match(t.name)) and _dead(int(m.group(1)))]
    for target, source in sorted(stale, key=lambda m: len(m[0].parts), reverse=True):
        log.warning("releasing a mount left by an interrupted run", target=str(target))
        mount.umount(target, lazy=True)
        if target.name.startswith(probe.NEW_IMAGE_PREFIX) and re.fullmatch(r"/dev/loop\d+",
                                                                             source):
            loop.detach(source)
        with contextlib.suppress(OSError):
            target.rmdir()


def _prune(ctx: Context) -> None:
    record = staterecord.read(ctx.state_root)
    if record is None:
        return
    keep = {e.digest for e in (record.active, record.passive, record.recovery) if e}
    removed = ctx.cache.prune(keep)
    if removed:
        log.info("cache pruned", blobs_removed=removed)


@contextlib.contextmanager
def _context(desired: Desired, observed: probe.Observed, plan: Plan) -> Iterator[Context]:
    from reconciler.cache import LayoutCache  # noqa: PLC0415
    from reconciler.steps.context import Context  # noqa: PLC0415

    needs_recovery = any(s.target == "recovery" for s in plan.steps)
    with contextlib.ExitStack() as stack:
        state_root = stack.enter_context(probe.mounted(observed.state_device, writable=True))
        recovery_root = None
        if needs_recovery:
            device = observed.partitions.get("COS_RECOVERY")
            if device is None:
                raise SystemLayoutError("a recovery image is desired but there is no "
                                        "COS_RECOVERY partition",
                                        hint="remove 'recovery:' from the config")
            recovery_root = stack.enter_context(probe.mounted(device, writable=True))
        if desired.cache_dir is not None:
            cache_root = desired.cache_dir
        elif "COS_PERSISTENT" in observed.partitions:
            persistent = stack.enter_context(
                probe.mounted(observed.partitions["COS_PERSISTENT"], writable=True))
            cache_root = persistent / CACHE_SUBDIR
        else:
            cache_root = state_root / CACHE_SUBDIR
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cos-reconciler-")))
        yield Context(desired=desired, observed=observed, state_root=state_root,
                      recovery_root=recovery_root, cache=LayoutCache(cache_root),
                      workdir=workdir)
