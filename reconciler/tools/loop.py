"""losetup: attach image files to loop devices, refresh their size, detach them."""

from __future__ import annotations

from pathlib import Path

from reconciler.tools._run import run


def attach(image: Path) -> str:
    """Attach `image` to a free loop device and return the device path."""
    return run(["losetup", "-f", "--show", str(image)]).text.strip()


def refresh(device: str) -> None:
    """Make the loop device see its backing file's new size."""
    run(["losetup", "-c", device])


def detach(device: str) -> None:
    """Detach the loop device."""
    run(["losetup", "-d", device])
