"""write: build the new slot image (ext4, 4 KiB blocks) from the cached layers.

The image file is fully allocated up front (never sparse), so a lack of space shows before any
byte is written. Layers are applied straight into the loop-mounted new filesystem; if the size
estimate proves short the file and filesystem are grown and the layer applied again
(re-applying a layer converges). A `.done` marker written last makes the step resumable.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from reconciler import durable, logs, probe, sizing
from reconciler.errors import NoSpaceError
from reconciler.plan import Step
from reconciler.steps.context import Context
from reconciler.tools import e2fs, loop, mount
from reconciler.unpack import Unpacker, UnpackStats

log = logs.get_logger(__name__)

MIB = 1 << 20
RESERVE = 16 * MIB
LABELS = {"system": "COS_ACTIVE", "recovery": "COS_SYSTEM"}
TRANSITION = {"system": "cOS/transition.img", "recovery": "cOS/recovery.transition.img"}
MAX_GROWTHS = 3
MOUNT_OPTIONS = "noatime"


def transition_path(ctx: Context, target: str) -> Path:
    return ctx.target_root(target) / TRANSITION[target]


def read_marker(image: Path) -> dict[str, str] | None:
    """The completion marker of a finished transition image, if there is one."""
    try:
        data = json.loads(probe.marker_path(image).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and image.is_file() else None


def discard(image: Path) -> None:
    """Remove a transition image and its marker."""
    probe.marker_path(image).unlink(missing_ok=True)
    image.unlink(missing_ok=True)


def write(ctx: Context, step: Step) -> None:
    """Make the transition image for `step.digest`, or keep the one already finished for it."""
    image = transition_path(ctx, step.target)
    done = read_marker(image)
    if done and done.get("digest") == step.digest:
        log.info("write: transition image already built", image=str(image))
        return
    discard(image)
    layers = ctx.cache.layers(step.digest)
    size = sizing.image_size(layers)
    image.parent.mkdir(parents=True, exist_ok=True)
    _allocate(image, size, partition=step.target)
    fs_uuid = str(uuid.uuid4())
    try:
        e2fs.mkfs(image, label=LABELS[step.target], uuid=fs_uuid)
        with _loop_mounted(image) as (device, root):
            unpacker = Unpacker(root)
            stats = UnpackStats(0, 0, 0, 0)
            for layer in layers:
                for growth in range(MAX_GROWTHS + 1):
                    try:
                        stats = stats + unpacker.apply(layer)
                        break
                    except NoSpaceError:
                        if growth == MAX_GROWTHS:
                            raise
                        size = size + max(size // 2, 32 * MIB)
                        log.warning("write: image estimate too small, growing",
                                    size_mib=size // MIB)
                        _grow(image, size, device, root, partition=step.target)
            unpacker.finish()
        durable.fsync_path(image)
    except BaseException:
        discard(image)
        raise
    marker = {"digest": step.digest, "image": step.image, "fs_uuid": fs_uuid}
    durable.replace_atomically(probe.marker_path(image), json.dumps(marker).encode())
    log.info("write: image built", image=str(image), size_mib=size // MIB,
             files=stats.files, entries=stats.entries)


def _allocate(image: Path, size: int, *, partition: str) -> None:
    """Allocate `size` bytes for real, failing cleanly (file removed) if they do not fit."""
    current = image.stat().st_size if image.exists() else 0
    free = shutil.disk_usage(image.parent).free
    if size - current + RESERVE > free:
        name = "COS_RECOVERY" if partition == "recovery" else "COS_STATE"
        raise NoSpaceError(
            f"{name} has {free // MIB} MiB free; the new image needs {size // MIB} MiB "
            f"(plus {RESERVE // MIB} MiB reserve)",
            hint=f"enlarge {name} (it must hold active, passive and one new image) or use a "
                 "smaller image; nothing was changed")
    fd = os.open(image, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        raise NoSpaceError(f"could not allocate {size // MIB} MiB for {image}: {err.strerror}",
                           hint="free space on the partition; nothing was changed") from err
    finally:
        os.close(fd)


def _grow(image: Path, size: int, device: str, root: Path, *, partition: str) -> None:
    """Grow the image file and its filesystem (offline: online resizing needs
    CAP_SYS_RESOURCE, which containers often lack), then mount it again at `root`."""
    mount.umount(root)
    try:
        _allocate(image, size, partition=partition)
        loop.refresh(device)
        e2fs.grow(device)
    finally:
        mount.mount(device, root, fstype="ext4", options=MOUNT_OPTIONS)


@contextlib.contextmanager
def _loop_mounted(image: Path) -> Iterator[tuple[str, Path]]:
    device = loop.attach(image)
    try:
        with tempfile.TemporaryDirectory(prefix=f"{probe.NEW_IMAGE_PREFIX}{os.getpid()}-") as tmp:
            root = Path(tmp)
            mount.mount(device, root, fstype="ext4", options=MOUNT_OPTIONS)
            try:
                yield device, root
            finally:
                mount.umount(root)
    finally:
        loop.detach(device)
