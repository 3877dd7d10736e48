"""A throw-away cOS disk on a loop device (GPT, COS_* labelled ext4), plus a fake host root."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from reconciler import logs
from reconciler.errors import SystemLayoutError
from reconciler.sandbox import _mounts
from reconciler.tools._run import run

log = logs.get_logger(__name__)

MIB = 1024 * 1024
EXTRA_MIB = 16
FACTORY_IMAGE_MIB = 32
FACTORY_OS_RELEASE = (
    'NAME="cOS factory"\nVERSION="factory"\nIMAGE_REPO="factory"\nIMAGE_TAG="factory"\n'
    'IMAGE="factory:factory"\n'
)


class SandboxDisk:
    """A sparse disk file attached to a loop device, partitioned and formatted like cOS.

    Use as a context manager; everything it attached or mounted (including loop mounts of
    image files stored on its partitions) is torn down on exit, even after a failure.
    """

    def __init__(self, workdir: Path, *, state_mib: int = 512, persistent_mib: int = 512,
                 oem_mib: int = 32, recovery_mib: int = 0, factory: bool = True,
                 extra_labels: Sequence[str] = ()) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / "disk.img"
        self.device = ""
        self.partitions: dict[str, str] = {}
        self.all_partitions: tuple[tuple[str, str], ...] = ()
        self.factory = factory
        layout = [("oem", "COS_OEM", oem_mib)]
        if recovery_mib > 0:
            layout.append(("recovery", "COS_RECOVERY", recovery_mib))
        layout += [("state", "COS_STATE", state_mib), ("persistent", "COS_PERSISTENT",
                                                      persistent_mib)]
        layout += [(f"extra{i}", label, EXTRA_MIB) for i, label in enumerate(extra_labels, 1)]
        self._layout = layout
        self._numbers: set[tuple[int, int]] = set()
        self._mountpoints: set[Path] = set()

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> SandboxDisk:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _create(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        total_mib = 2 + sum(mib for _, _, mib in self._layout)
        with open(self.path, "wb") as disk:
            disk.truncate(total_mib * MIB)
        script = "label: gpt\n" + "".join(
            f"size={mib}MiB, type=linux, name={name}\n" for name, _, mib in self._layout)
        run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(self.path)],
            input=script.encode())
        self.device = run(["losetup", "-f", "--show", str(self.path)]).text.strip()
        number = _mounts.device_number(self.device)
        if number is not None:
            self._numbers.add(number)
        self._add_partitions()
        pairs = []
        for index, (_, label, _) in enumerate(self._layout, 1):
            part = f"{self.device}p{index}"
            run(["mkfs.ext4", "-q", "-F", "-L", label, part])
            pairs.append((label, part))
            self.partitions.setdefault(label, part)
        self.all_partitions = tuple(pairs)
        if self.factory:
            self._install_factory()

    def _add_partitions(self) -> None:
        count = len(self._layout)
        # Partitions that a previous user of this loop number left behind would make
        # `partx -a` fail (the kernel keeps them when a loop is detached without partscan).
        run(["partx", "-d", self.device], accept=range(256))
        run(["partx", "-a", self.device])
        deadline = time.monotonic() + 5
        parts = [f"{self.device}p{i}" for i in range(1, count + 1)]
        while not all(os.path.exists(p) for p in parts):
            if time.monotonic() > deadline:
                raise SystemLayoutError(
                    f"partition nodes for {self.device} did not appear",
                    hint="is devtmpfs mounted on /dev? (partx -a adds them to the kernel)")
            time.sleep(0.05)
        for part in parts:
            number = _mounts.device_number(part)
            if number is not None:
                self._numbers.add(number)

    def _install_factory(self) -> None:
        tree = Path(tempfile.mkdtemp(prefix="factory-tree-", dir=self.workdir))
        try:
            os.chmod(tree, 0o755)
            for sub in ("etc", "usr", "usr/bin", "var", "tmp"):
                (tree / sub).mkdir(mode=0o755)
            os.chmod(tree / "tmp", 0o1777)
            (tree / "etc/os-release").write_text(FACTORY_OS_RELEASE)
            with self.mount("COS_STATE") as state:
                cos = state / "cOS"
                cos.mkdir(mode=0o755)
                run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "COS_ACTIVE", "-d", str(tree),
                     str(cos / "active.img"), f"{FACTORY_IMAGE_MIB}M"])
        finally:
            shutil.rmtree(tree, ignore_errors=True)

    def close(self) -> None:
        """Unmount and detach everything belonging to this disk; safe to call twice."""
        sources = {part for _, part in self.all_partitions}
        if self.device:
            sources |= {f"{self.device}p{i}" for i in range(1, len(self._layout) + 1)}
            sources.add(self.device)
        if self._numbers or sources:
            _mounts.teardown(set(self._numbers), sources)
        if self.device:
            run(["partx", "-d", self.device], accept=range(256))
            _mounts.detach(self.device)
            self.device = ""
        self.partitions = {}
        self.all_partitions = ()
        self._numbers = set()
        for target in self._mountpoints:
            with contextlib.suppress(OSError):
                target.rmdir()
        self._mountpoints = set()

    # -- mounting ----------------------------------------------------------------------

    @contextlib.contextmanager
    def mount(self, label: str, *, readonly: bool = False) -> Iterator[Path]:
        """Mount the partition labelled `label` on a fresh directory for the `with` block."""
        if label not in self.partitions:
            raise SystemLayoutError(f"the sandbox disk has no partition labelled {label}")
        target = Path(tempfile.mkdtemp(prefix=f"mnt-{label.lower()}-", dir=self.workdir))
        self._mountpoints.add(target)
        options = ["-o", "ro"] if readonly else []
        try:
            run(["mount", *options, self.partitions[label], str(target)])
            try:
                yield target
            finally:
                _mounts.unmount(str(target))
        finally:
            with contextlib.suppress(OSError):
                target.rmdir()

    @contextlib.contextmanager
    def mount_image(self, path: Path) -> Iterator[Path]:
        """Loop-mount an image file read-only for the `with` block, then free the loop."""
        target = Path(tempfile.mkdtemp(prefix="mnt-image-", dir=self.workdir))
        self._mountpoints.add(target)
        try:
            run(["mount", "-o", "loop,ro", str(path), str(target)])
            try:
                yield target
            finally:
                _mounts.unmount(str(target))
                real = os.path.realpath(path)
                for lo in _mounts.loop_devices():
                    if lo.back_file and os.path.realpath(lo.back_file) == real:
                        _mounts.detach(lo.name)
        finally:
            with contextlib.suppress(OSError):
                target.rmdir()


# -- the host side -------------------------------------------------------------------------

_CMDLINE = {
    "active": ("root=LABEL=COS_STATE cos-img/filename=/cOS/active.img "
               "elemental.mode=active"),
    "passive": ("root=LABEL=COS_STATE cos-img/filename=/cOS/passive.img "
                "elemental.mode=passive"),
    "recovery": ("root=LABEL=COS_RECOVERY cos-img/filename=/cOS/recovery.img "
                 "elemental.mode=recovery"),
}
_LIVE_CMDLINE = ("BOOT_IMAGE=/boot/kernel console=tty1 root=live:CDLABEL=COS_LIVE "
                 "rd.live.dir=/ rd.live.squashimg=rootfs.squashfs rd.cos.disable\n")


def fake_host_root(workdir: Path, *, mode: str | None) -> Path:
    """A directory standing for the host's `/`: `proc/cmdline` and `run/*/MODE_mode` markers.

    `mode` is "active", "passive" or "recovery"; None stands for a live medium (no cos-img
    on the command line, no marker). Markers are written both in `run/cos` and
    `run/elemental`, as v2 initrds do. Returns the new directory.
    """
    if mode is not None and mode not in _CMDLINE:
        raise ValueError(f"mode must be one of {sorted(_CMDLINE)} or None, not {mode!r}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"host-{mode or 'live'}-", dir=workdir))
    os.chmod(root, 0o755)
    (root / "proc").mkdir()
    (root / "run").mkdir()
    if mode is None:
        cmdline = _LIVE_CMDLINE
    else:
        cmdline = (f"BOOT_IMAGE=/boot/vmlinuz console=tty1 {_CMDLINE[mode]} panic=5\n")
        for marker_dir in ("cos", "elemental"):
            (root / "run" / marker_dir).mkdir()
            (root / "run" / marker_dir / f"{mode}_mode").touch()
    (root / "proc" / "cmdline").write_text(cmdline)
    return root
