"""e2fsprogs: make, relabel and grow ext4 filesystems in image files."""

from __future__ import annotations

from pathlib import Path

from reconciler.tools._run import run


def mkfs(target: Path | str, *, label: str, uuid: str, inode_ratio: int = 4096) -> None:
    """Make an ext4 filesystem with 4 KiB blocks and an inode per block (blocks, not inodes,
    run out first); never discard (keeps the file allocated)."""
    run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-i", str(inode_ratio), "-L", label, "-U", uuid,
         "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", "-m", "0", str(target)])


def set_label(target: Path | str, label: str) -> None:
    """Set the filesystem label of a device or image file."""
    run(["tune2fs", "-L", label, str(target)])


def grow(device: str) -> None:
    """Grow the unmounted ext4 filesystem on `device` to the device's size."""
    run(["resize2fs", "-f", device])
