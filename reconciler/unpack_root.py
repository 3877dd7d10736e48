"""Resolve and change paths inside an unpack root as if that root were "/".

Member names are checked here (`check_name`), parent directories are resolved inside the root
following symlinks the way the kernel would after a chroot (`RootView.resolve`), and removals
(replacement, whiteouts, opaque directories) happen here, so that no path outside the root is
ever created, changed or removed. Real paths are bytes, absolute, and free of symlinks.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable

_NAME_MAX = 255
_PATH_MAX = 4095
_SYMLINK_HOPS = 40  # as Linux's MAXSYMLINKS


class Refused(Exception):
    """A member asks for something an image must not do; the text completes "member X ..."."""


def shown(name: bytes) -> str:
    """A member name or path as it appears in messages (shortened if huge)."""
    text = name.decode("utf-8", "backslashreplace")
    if len(text) > 200:
        text = f"{text[:120]}...{text[-60:]}"
    return repr(text)


def check_name(name: bytes) -> list[bytes]:
    """The components of a relative member name ("./" and "." dropped), or Refused."""
    if b"\0" in name:
        raise Refused("contains a NUL byte")
    if name.startswith(b"/"):
        raise Refused("is an absolute path")
    comps = [c for c in name.split(b"/") if c and c != b"."]
    if not comps:
        return comps
    if b".." in comps:
        raise Refused("has a '..' component")
    if max(map(len, comps)) > _NAME_MAX:
        raise Refused(f"has a component longer than {_NAME_MAX} bytes")
    if sum(map(len, comps)) + len(comps) - 1 > _PATH_MAX:
        raise Refused(f"is longer than {_PATH_MAX} bytes")
    return comps


class RootView:
    """One layer's view of the root: cached parent resolution, removals, its own entries.

    `mine` holds the real paths this layer wrote and every directory its entries were placed
    under (found or created while resolving parents); an opaque marker or whiteout removes
    everything else and keeps these, whatever order the stream put them in. The cache of
    resolved directories lives as long as the layer and is dropped whenever a directory, or a
    symlink that a cached resolution went through, is removed.
    """

    def __init__(self, root: bytes, *, on_dir_removed: Callable[[bytes], None]) -> None:
        self.root = root
        self.mine: set[bytes] = set()
        self._dirs: dict[bytes, bytes] = {}  # member directory name -> real path
        self._followed: set[bytes] = set()  # symlinks that cached resolutions went through
        self._on_dir_removed = on_dir_removed

    # --- resolution ------------------------------------------------------------------------

    def resolve(self, key: bytes) -> bytes:
        """Real path of directory `key` ("" is the root); missing ones are created (0755)."""
        hit = self._dirs.get(key)
        if hit is not None:
            return hit
        found = self._walk(key, create=True)
        assert found is not None
        return found

    def lookup(self, key: bytes) -> bytes | None:
        """Real path of the existing directory `key`, or None; creates nothing."""
        hit = self._dirs.get(key)
        return hit if hit is not None else self._walk(key, create=False)

    def known_dir(self, key: bytes, path: bytes) -> None:
        """Remember that member directory `key` is now the real directory `path`."""
        self._dirs[key] = path
        self.mine.add(path)

    def _walk(self, key: bytes, *, create: bool) -> bytes | None:
        pending = []
        current = self.root
        while key:
            hit = self._dirs.get(key)
            if hit is not None:
                current = hit
                break
            pending.append(key)
            key = key.rpartition(b"/")[0]
        hops = [0]
        for prefix in reversed(pending):
            found = self._step(current, prefix.rpartition(b"/")[2], create, hops)
            if found is None:
                return None
            current = found
            if create:
                self._dirs[prefix] = current
        return current

    def _step(self, current: bytes, name: bytes, create: bool, hops: list[int]) -> bytes | None:
        """The real directory that `name` in real directory `current` leads to."""
        path = current + b"/" + name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(path, 0o755)
            os.chown(path, 0, 0)
            os.chmod(path, 0o755)
            self.mine.add(path)
            return path
        if stat.S_ISDIR(st.st_mode):
            if create:
                self.mine.add(path)
            return path
        if not stat.S_ISLNK(st.st_mode):
            if not create:
                return None
            raise Refused(f"is placed under {shown(path[len(self.root) + 1:])}, "
                          "which is not a directory")
        hops[0] += 1
        if hops[0] > _SYMLINK_HOPS:
            raise Refused("is placed under too many levels of symbolic links")
        self._followed.add(path)
        target = os.readlink(path)
        if target.startswith(b"/"):
            current = self.root   # absolute targets resolve inside root, as in a chroot
        for part in target.split(b"/"):
            if not part or part == b".":
                continue
            if part == b"..":
                if current == self.root and not target.startswith(b"/"):
                    # A relative link climbing above / only exists to escape an extractor.
                    raise Refused(f"is placed under symlink {shown(path[len(self.root) + 1:])} "
                                  f"-> {shown(target)}, which points outside the root")
                if current != self.root:
                    current = current.rpartition(b"/")[0]
                continue
            found = self._step(current, part, create, hops)
            if found is None:
                return None
            current = found
        return current

    def link_source(self, linkname: bytes) -> bytes:
        """Real path of an existing non-directory a hardlink member may point at."""
        target = shown(linkname)
        if linkname.startswith(b"/"):
            raise Refused(f"is a hardlink to an absolute path {target}")
        try:
            comps = check_name(linkname)
        except Refused as err:
            raise Refused(f"is a hardlink to {target}, which {err}") from None
        if not comps:
            raise Refused("is a hardlink to the root directory")
        parent = self.lookup(b"/".join(comps[:-1]))
        source = b"" if parent is None else parent + b"/" + comps[-1]
        try:
            mode = os.lstat(source).st_mode if source else None
        except FileNotFoundError:
            mode = None
        if mode is None:
            raise Refused(f"is a hardlink to {target}, which does not exist (yet)")
        if stat.S_ISDIR(mode):
            raise Refused(f"is a hardlink to directory {target}")
        return source

    # --- removal ---------------------------------------------------------------------------

    def _forget(self) -> None:
        self._dirs.clear()
        self._followed.clear()

    def remove(self, path: bytes, st: os.stat_result | None = None) -> None:
        """Remove whatever is at real path `path` (a directory with its contents)."""
        if st is None:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)  # fd-based on Linux: never follows symlinks inside
            self._forget()
            self._on_dir_removed(path)
        else:
            os.unlink(path)
            if path in self._followed:
                self._forget()

    def whiteout(self, path: bytes) -> None:
        """Hide what lower layers put at `path`; this layer's own entries stay."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if path not in self.mine:
            self.remove(path, st)
        elif stat.S_ISDIR(st.st_mode):
            self.clear_lower(path)

    def clear_lower(self, directory: bytes) -> None:
        """Make `directory` opaque: remove everything below it that this layer did not write."""
        stack = [directory]
        while stack:
            with os.scandir(stack.pop()) as listing:
                entries = list(listing)
            for entry in entries:
                if entry.path not in self.mine:
                    self.remove(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
