"""What is in the sandbox OS images: writes layer staging trees and expected merged trees."""

from __future__ import annotations

import os
import random
import shutil
import stat
from pathlib import Path

from reconciler.tools._run import run

EPOCH = 1_700_000_000  # every file's mtime, in layers (tar --mtime) and expected trees

_TTY_GID = 5
_MAIL_GID = 8
_SHADOW_GID = 42
_USER = 1000


# -- primitives: each creates one entry with exact metadata, regardless of umask ------------

def _dir(root: Path, rel: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
    path = root / rel
    path.mkdir(exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def _parents(root: Path, rel: str) -> None:
    """Create the missing parent directories of `rel` as plain 0755 root directories."""
    parts = Path(rel).parts[:-1]
    for i in range(1, len(parts) + 1):
        sub = os.path.join(*parts[:i])
        if not (root / sub).exists():
            _dir(root, sub)


def _file(root: Path, rel: str, data: bytes | str, mode: int = 0o644, *, uid: int = 0,
          gid: int = 0) -> None:
    _parents(root, rel)
    path = root / rel
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)  # after chown, which clears setuid/setgid bits


def _symlink(root: Path, rel: str, target: str) -> None:
    _parents(root, rel)
    os.symlink(target, root / rel)


def _os_release(version: str, repo: str, tag: str) -> str:
    return (f'NAME="cOS sandbox"\nVERSION="{version}"\nID=cos-sandbox\n'
            f'IMAGE_REPO="{repo}"\nIMAGE_TAG="{tag}"\nIMAGE="{repo}:{tag}"\n')


def set_mtimes(root: Path) -> None:
    """Give every non-directory under `root` the fixed EPOCH mtime (symlinks themselves)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            os.utime(os.path.join(dirpath, name), (EPOCH, EPOCH), follow_symlinks=False)


def new_root(path: Path) -> Path:
    """An empty root directory (0755 root:root) at `path`."""
    path.mkdir(parents=True)
    os.chown(path, 0, 0)
    os.chmod(path, 0o755)
    return path


# -- the layers --------------------------------------------------------------------------

def base(root: Path, *, filler_files: int = 0, filler_bytes: int = 0) -> None:
    """The base layer: a small but awkward root filesystem (every kind of entry and bit)."""
    for sub in ("usr", "usr/bin", "usr/sbin", "usr/lib", "usr/share", "etc", "var", "var/log",
                "dev", "proc", "sys", "run", "home", "usr/local", "var/lib"):
        _dir(root, sub)
    _symlink(root, "bin", "usr/bin")
    _symlink(root, "sbin", "usr/sbin")
    _symlink(root, "lib", "usr/lib")
    _dir(root, "tmp", 0o1777)
    _dir(root, "root", 0o700)
    _file(root, "root/.bashrc", "export PS1='# '\n", 0o600)
    _dir(root, "var/lib/private", 0o700)
    _dir(root, "var/mail", 0o2775, 0, _MAIL_GID)
    _dir(root, "home/user", 0o755, _USER, _USER)
    _file(root, "home/user/.profile", "export EDITOR=vi\n", uid=_USER, gid=_USER)
    _file(root, "usr/bin/su", "#!/bin/sh\necho su\n", 0o4755)
    _file(root, "usr/bin/wall", "#!/bin/sh\necho wall\n", 0o2755, gid=_TTY_GID)
    _file(root, "usr/bin/ping", "#!/bin/sh\necho ping\n", 0o755)
    run(["setcap", "cap_net_raw+ep", str(root / "usr/bin/ping")])
    _file(root, "usr/bin/gzip", "#!/bin/sh\necho gzip\n", 0o755)
    os.link(root / "usr/bin/gzip", root / "usr/bin/gunzip")
    _symlink(root, "usr/bin/zcat", "gzip")
    _file(root, "usr/share/zoneinfo/UTC", b"TZif2\0\0\0UTC\n")
    _symlink(root, "etc/localtime", "/usr/share/zoneinfo/UTC")
    _file(root, "etc/hostname", "sandbox\n")
    _file(root, "etc/motd", "Welcome to the cOS sandbox, version 1.\n")
    _file(root, "etc/passwd",
          "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    _file(root, "etc/group", "root:x:0:\ntty:x:5:\nmail:x:8:\nshadow:x:42:\nuser:x:1000:\n")
    _file(root, "etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640, gid=_SHADOW_GID)
    _file(root, "etc/machine-id", b"", 0o444)
    _file(root, "etc/skel/.bashrc", "# skel v1\n")
    _file(root, "etc/skel/.profile", "# skel profile v1\n")
    _file(root, "etc/skel/.config/app.conf", "colour=yes\n")
    _file(root, "usr/share/doc/legacy.txt", "this file is deleted in v2\n")
    _file(root, "usr/share/doc/xattr.txt", "carries a user xattr\n")
    os.setxattr(root / "usr/share/doc/xattr.txt", "user.sandbox.origin", b"base-layer")
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(root / "dev/null", 0o666)
    _dir(root, "usr/lib/sandbox")
    os.mkfifo(root / "usr/lib/sandbox/initctl")
    os.chmod(root / "usr/lib/sandbox/initctl", 0o600)
    if filler_files > 0:
        _filler(root, filler_files, filler_bytes)


def _filler(root: Path, count: int, total: int) -> None:
    """`count` files of deterministic pseudo-random (incompressible) data, ~`total` bytes."""
    _dir(root, "usr/share/filler")
    each, extra = divmod(max(total, 0), count)
    rng = random.Random(0x5EED)
    for i in range(count):
        size = each + (extra if i == count - 1 else 0)
        with open(root / f"usr/share/filler/blob-{i:05d}.bin", "wb") as out:
            left = size
            while left > 0:
                chunk = min(left, 1 << 22)
                out.write(rng.randbytes(chunk))
                left -= chunk
        os.chmod(root / f"usr/share/filler/blob-{i:05d}.bin", 0o644)


def app(root: Path, repo: str) -> None:
    """The second layer, shared by v1 and v2: an application plus v1's os-release."""
    _file(root, "etc/os-release", _os_release("1", repo, "v1"))
    _file(root, "usr/bin/sandbox-app", "#!/bin/sh\necho app 1\n", 0o755)
    _file(root, "usr/share/sandbox-app/data.txt", "app data\n")


def top_staging(root: Path, repo: str) -> None:
    """v2's own layer as stored: whiteout, opaque directory, modified and new files."""
    _file(root, "etc/os-release", _os_release("2", repo, "v2"))
    _file(root, "etc/motd", "Welcome to the cOS sandbox, version 2.\n")
    _file(root, "usr/share/doc/.wh.legacy.txt", b"")
    _file(root, "etc/skel/.wh..wh..opq", b"")
    _file(root, "etc/skel/.bashrc", "# skel v2\n")
    _file(root, "usr/bin/sandbox-tool", "#!/bin/sh\necho new in 2\n", 0o755)


def top_applied(root: Path, repo: str) -> None:
    """The same changes as `top_staging`, applied directly to a merged v1 tree."""
    _file(root, "etc/os-release", _os_release("2", repo, "v2"))
    _file(root, "etc/motd", "Welcome to the cOS sandbox, version 2.\n")
    (root / "usr/share/doc/legacy.txt").unlink()
    for child in (root / "etc/skel").iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    _file(root, "etc/skel/.bashrc", "# skel v2\n")
    _file(root, "usr/bin/sandbox-tool", "#!/bin/sh\necho new in 2\n", 0o755)
