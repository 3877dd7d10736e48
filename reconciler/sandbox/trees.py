"""Compare two root filesystem trees entry by entry, metadata included."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

_IGNORED_XATTRS = frozenset({"security.selinux"})


@dataclass(frozen=True)
class Entry:
    """What one path of a tree looks like, as far as an OS image is concerned."""

    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    inode: tuple[int, int]
    sha256: str
    target: str
    rdev: int
    xattrs: tuple[tuple[str, bytes], ...]


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise
    pairs = []
    for name in sorted(names):
        if name in _IGNORED_XATTRS:
            continue
        pairs.append((name, os.getxattr(path, name, follow_symlinks=False)))
    return tuple(pairs)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(path: str) -> Entry:
    st = os.lstat(path)
    regular = stat.S_ISREG(st.st_mode)
    return Entry(
        mode=st.st_mode, uid=st.st_uid, gid=st.st_gid,
        size=st.st_size if regular else 0,
        mtime=int(st.st_mtime),
        inode=(st.st_dev, st.st_ino),
        sha256=_sha256(path) if regular else "",
        target=os.readlink(path) if stat.S_ISLNK(st.st_mode) else "",
        rdev=st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0,
        xattrs=_xattrs(path),
    )


def _raise(err: OSError) -> None:
    raise err


def scan(root: Path, *, skip_lost_found: bool = False) -> dict[str, Entry]:
    """Every path under `root` ("." for the root itself) mapped to its Entry."""
    entries: dict[str, Entry] = {".": _entry(str(root))}
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        rel_dir = os.path.relpath(dirpath, root)
        if skip_lost_found and rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != "lost+found"]
        for name in dirnames + filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            entries[rel] = _entry(os.path.join(dirpath, name))
    return entries


def _kind(mode: int) -> str:
    return {stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink",
            stat.S_IFCHR: "char device", stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo",
            stat.S_IFSOCK: "socket"}.get(stat.S_IFMT(mode), "unknown")


def _links(entries: dict[str, Entry]) -> dict[str, frozenset[str]]:
    groups: dict[tuple[int, int], set[str]] = {}
    for path, entry in entries.items():
        if not stat.S_ISDIR(entry.mode):
            groups.setdefault(entry.inode, set()).add(path)
    return {path: frozenset(group) for group in groups.values() for path in group}


def _differences(path: str, want: Entry, got: Entry) -> list[str]:
    if stat.S_IFMT(want.mode) != stat.S_IFMT(got.mode):
        return [f"{path}: is a {_kind(got.mode)}, expected a {_kind(want.mode)}"]
    out = []
    if want.mode != got.mode:
        out.append(f"{path}: mode {oct(got.mode)}, expected {oct(want.mode)}")
    if (want.uid, want.gid) != (got.uid, got.gid):
        out.append(f"{path}: owner {got.uid}:{got.gid}, expected {want.uid}:{want.gid}")
    if want.size != got.size:
        out.append(f"{path}: size {got.size}, expected {want.size}")
    elif want.sha256 != got.sha256:
        out.append(f"{path}: content differs (sha256 {got.sha256[:12]}, "
                   f"expected {want.sha256[:12]})")
    if want.target != got.target:
        out.append(f"{path}: symlink to {got.target!r}, expected {want.target!r}")
    if want.rdev != got.rdev:
        out.append(f"{path}: device {os.major(got.rdev)}:{os.minor(got.rdev)}, expected "
                   f"{os.major(want.rdev)}:{os.minor(want.rdev)}")
    if want.xattrs != got.xattrs:
        out.append(f"{path}: xattrs {dict(got.xattrs)!r}, expected {dict(want.xattrs)!r}")
    if not stat.S_ISDIR(want.mode) and want.mtime != got.mtime:
        out.append(f"{path}: mtime {got.mtime}, expected {want.mtime}")
    return out


def compare_trees(expected: Path, actual: Path) -> list[str]:
    """Human-readable differences between two trees; an empty list means identical.

    Compares the set of paths, type, full mode (setuid/setgid/sticky included), owner,
    size and sha256 of regular files, symlink targets, device numbers, xattrs (except
    security.selinux), hardlink grouping and mtime of everything but directories.
    Symlinks are never followed; `lost+found` at the root of `actual` is ignored.
    """
    want = scan(Path(expected))
    got = scan(Path(actual), skip_lost_found=True)
    out = [f"{path}: missing" for path in sorted(want.keys() - got.keys())]
    out += [f"{path}: unexpected" for path in sorted(got.keys() - want.keys())]
    common = sorted(want.keys() & got.keys())
    for path in common:
        out += _differences(path, want[path], got[path])
    want_links, got_links = _links(want), _links(got)
    for path in common:
        if path not in want_links or path not in got_links:
            continue
        expected_group = want_links[path] & got.keys()
        actual_group = got_links[path] & want.keys()
        if expected_group != actual_group:
            out.append(f"{path}: hardlinked with {sorted(actual_group - {path})}, expected "
                       f"{sorted(expected_group - {path})}")
    return out
