"""Durable file operations: fsync a file or directory, replace a small file atomically."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush `path` (a file, or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(target: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to a temporary file beside `target`, fsync it, rename it over `target`
    and fsync the directory: readers see the old or the new content, never a mix."""
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, target)
    fsync_path(target.parent, directory=True)
