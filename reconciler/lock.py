"""One reconcile at a time: an flock under the host's /run, waited for a bounded time."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from reconciler import logs
from reconciler.errors import LockHeld

log = logs.get_logger(__name__)
LOCK_NAME = "run/cos-reconciler.lock"


@contextlib.contextmanager
def held(host_root: Path, timeout_s: float, *, poll_s: float = 0.2) -> Iterator[None]:
    """Hold the lock for the block; raise LockHeld if another run keeps it past `timeout_s`."""
    path = host_root / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                if time.monotonic() >= deadline:
                    raise LockHeld(
                        f"another reconcile run (pid {holder}) holds {path}",
                        hint=f"wait for it to finish (waited {timeout_s:g} s) or raise "
                             "lock_timeout_s") from None
                if not announced:
                    log.info("waiting for another reconcile run", pid=holder, lock=str(path))
                    announced = True
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
