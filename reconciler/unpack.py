"""Apply OCI image layers (tar streams) onto a root directory, merged as a container runtime does.

One job: turn an ordered list of layer blobs into one root filesystem tree, never creating,
changing or removing anything outside that root, and refusing (HostileImageError) whatever an
image must not do. Re-applying a layer over a partly applied copy of itself (after NoSpaceError,
once the filesystem has grown) converges to the same tree.

Design:
- a streaming tar reader of our own (`unpack_tar`) feeds members one by one; gzip and zstd are
  decompressed by pigz / gzip / zstd through `tools._run.Stream`;
- every parent directory is resolved inside the root by `unpack_root.RootView`, following
  symlinks as if the root were "/"; the final component of a member is never followed;
- whiteouts follow the OCI layer spec; an opaque marker removes what the lower layers left in its
  directory and keeps what this layer put there (tracked as a set of paths, see `RootView.mine`);
- directory times are set last (`Unpacker.finish`), since adding children changes them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler import logs
from reconciler.errors import (
    HostileImageError,
    NoSpaceError,
    ReconcileError,
    SystemLayoutError,
    ToolFailed,
)
from reconciler.tools import _run
from reconciler.unpack_root import Refused, RootView, check_name, shown
from reconciler.unpack_tar import (
    BLK,
    CHR,
    DIR,
    FIFO,
    LNK,
    REG,
    SYM,
    TarFormatError,
    TarMember,
    TarReader,
)

log = logs.get_logger(__name__)

_OCI = "application/vnd.oci.image.layer"
_DOCKER = "application/vnd.docker.image.rootfs"
_PLAIN = frozenset({f"{_OCI}.v1.tar", f"{_OCI}.nondistributable.v1.tar",
                    f"{_DOCKER}.diff.tar"})
_GZIP = frozenset({f"{_OCI}.v1.tar+gzip", f"{_OCI}.nondistributable.v1.tar+gzip",
                   f"{_DOCKER}.diff.tar.gzip", f"{_DOCKER}.foreign.diff.tar.gzip"})
_ZSTD = frozenset({f"{_OCI}.v1.tar+zstd", f"{_OCI}.nondistributable.v1.tar+zstd"})

_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_OPAQUE = b".wh..wh..opq"
_WHITEOUT = b".wh."
# Overlayfs keeps its own metadata in these; an image carrying them could steer a later overlay.
_OVERLAY_XATTRS = (b"trusted.overlay.", b"user.overlay.")
_NODE_KIND = {CHR: stat.S_IFCHR, BLK: stat.S_IFBLK, FIFO: stat.S_IFIFO}
_ID_MAX = (1 << 32) - 2  # (uid_t)-1 means "leave unchanged" to chown
_TIME_MAX = 1 << 63
_HOSTILE_HINT = "the image is unsafe to install: rebuild it from a trusted base"


@dataclass(frozen=True)
class Layer:
    """One layer blob of an OCI layout, as the manifest describes it."""

    path: Path  # blobs/sha256/<hex>
    media_type: str
    digest: str  # "sha256:...", for messages only (skopeo verified the bytes)


@dataclass(frozen=True)
class UnpackStats:
    """What applying one or more layers did."""

    entries: int = 0
    files: int = 0
    bytes_written: int = 0
    whiteouts: int = 0

    def __add__(self, other: UnpackStats) -> UnpackStats:
        return UnpackStats(self.entries + other.entries, self.files + other.files,
                           self.bytes_written + other.bytes_written,
                           self.whiteouts + other.whiteouts)


def apply_layer(root: Path, layer: Layer) -> UnpackStats:
    """Apply one layer onto `root`, then set the times of the directories it declared."""
    unpacker = Unpacker(root)
    stats = unpacker.apply(layer)
    unpacker.finish()
    return stats


def apply_layers(root: Path, layers: Sequence[Layer]) -> UnpackStats:
    """Apply `layers` in order onto `root`, then set every declared directory's times.

    After a NoSpaceError, retry with an `Unpacker` (apply the failed layer again, then the
    rest, then finish): re-applying one layer converges, re-applying lower layers over a
    partly applied upper one need not.
    """
    unpacker = Unpacker(root)
    total = UnpackStats()
    for layer in layers:
        total += unpacker.apply(layer)
    unpacker.finish()
    return total


GZIP_TOOLS = ("igzip", "pigz", "gzip")


def _decompressor(media_type: str, digest: str) -> list[str] | None:
    """The command that turns the blob into a tar stream; None for a plain tar."""
    if media_type in _PLAIN:
        return None
    if media_type in _GZIP:
        for tool in GZIP_TOOLS[:-1]:   # fastest first: igzip (ISA-L), then pigz
            with contextlib.suppress(SystemLayoutError):
                return [_run.require(tool), "-dc"]
        return [_run.require(GZIP_TOOLS[-1]), "-dc"]
    if media_type in _ZSTD:
        return [_run.require("zstd"), "-dc"]
    raise HostileImageError(
        f"layer {digest} has unsupported media type {media_type!r}",
        hint="only tar, tar+gzip and tar+zstd layers can be applied",
    )


class Unpacker:
    """Applies layers one after another onto one root; `finish()` then sets directory times.

    A caller that retries a layer after NoSpaceError (having grown the filesystem) calls
    `apply` again with the same layer, then carries on; `finish` runs once at the very end.
    """

    def __init__(self, root: Path) -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise ReconcileError(f"cannot unpack into {root}: not a directory")
        self.root = os.fsencode(real)
        self._seq = 0
        self._dir_times: dict[bytes, tuple[int, int]] = {}  # path -> (mtime ns, seq)
        self._removed: dict[bytes, int] = {}  # directory path -> seq of its last removal

    def apply(self, layer: Layer) -> UnpackStats:
        """Apply one layer, member by member in stream order; directory times wait for finish()."""
        started = time.monotonic()
        argv = _decompressor(layer.media_type, layer.digest)
        run = _LayerRun(self, layer)
        try:
            blob = os.open(layer.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise ReconcileError(f"cannot read layer {layer.digest} at {layer.path}: "
                                 f"{err.strerror}", hint="fetch the image again") from err
        try:
            if argv is None:
                try:
                    run.consume(TarReader(blob))
                except TarFormatError as err:
                    raise run.corrupt(str(err)) from err
            else:
                _stream_through(argv, blob, run)
        finally:
            os.close(blob)
        stats = run.stats()
        log.info("layer applied", digest=layer.digest, entries=stats.entries, files=stats.files,
                 bytes=stats.bytes_written, whiteouts=stats.whiteouts,
                 seconds=round(time.monotonic() - started, 3))
        return stats

    def finish(self) -> None:
        """Set the recorded times of directories still in place, deepest first."""
        times = sorted(self._dir_times.items(), key=lambda item: -item[0].count(b"/"))
        for path, (mtime_ns, seq) in times:
            if self._removed and self._removed_since(path, seq):
                continue
            try:
                os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
            except FileNotFoundError:
                continue
        self._dir_times.clear()
        self._removed.clear()

    # --- bookkeeping used by _LayerRun -----------------------------------------------------

    def dir_time(self, path: bytes, mtime_ns: int) -> None:
        self._seq += 1
        self._dir_times[path] = (mtime_ns, self._seq)

    def dir_removed(self, path: bytes) -> None:
        self._seq += 1
        self._removed[path] = self._seq

    def _removed_since(self, path: bytes, seq: int) -> bool:
        """Whether `path` or one of its ancestors was removed after `seq`."""
        while len(path) > len(self.root):
            if self._removed.get(path, 0) > seq:
                return True
            path = path.rpartition(b"/")[0]
        return False


def _stream_through(argv: list[str], blob: int, run: _LayerRun) -> None:
    """Feed `run` from a decompressor reading `blob`; a decompressor's complaint is hostile."""
    stream = _run.Stream(argv, stdin=blob)
    out = stream.stdout.fileno()
    with contextlib.suppress(OSError):
        fcntl.fcntl(out, fcntl.F_SETPIPE_SZ, 1 << 20)  # fewer, larger reads
    reader = TarReader(out)
    try:
        run.consume(reader)
        reader.drain()
    except TarFormatError as err:
        detail = ""
        if reader.eof:  # the decompressor stopped early: say why
            try:
                stream.close(check=True)
            except ToolFailed as failed:
                detail = f" ({failed.message})"
        else:
            stream.kill()
        raise run.corrupt(f"{err}{detail}") from err
    except BaseException:
        stream.kill()
        raise
    try:
        stream.close(check=True)
    except ToolFailed as failed:
        if failed.returncode == 2 and os.path.basename(argv[0]) == "gzip":
            # gzip's "warning" status (trailing garbage after the tar was complete); pigz
            # ignores such bytes with status 0, so the fallback behaves the same.
            log.warning("decompressor warning", digest=run.layer.digest, stderr=failed.stderr)
            return
        if failed.returncode > 0:  # it read the blob and rejected it
            raise run.corrupt(failed.message) from failed
        raise


class _LayerRun:
    """The application of one layer: per-member dispatch, counters, error mapping."""

    def __init__(self, unpacker: Unpacker, layer: Layer) -> None:
        self.unpacker = unpacker
        self.layer = layer
        self.view = RootView(unpacker.root, on_dir_removed=unpacker.dir_removed)
        self.entries = self.files = self.bytes = self.whiteouts = 0
        self.skipped_xattrs = 0

    def stats(self) -> UnpackStats:
        return UnpackStats(self.entries, self.files, self.bytes, self.whiteouts)

    def corrupt(self, detail: str) -> HostileImageError:
        return HostileImageError(
            f"layer {self.layer.digest} is truncated or corrupt: {detail}",
            hint="fetch the image again; if it persists, the image itself is broken",
        )

    def consume(self, reader: TarReader) -> None:
        while (member := reader.next()) is not None:
            self.entries += 1
            self._apply_mapped(member, reader)
        if self.skipped_xattrs:
            log.warning("extended attributes skipped", digest=self.layer.digest,
                        count=self.skipped_xattrs)

    def _apply_mapped(self, member: TarMember, reader: TarReader) -> None:
        digest, name = self.layer.digest, shown(member.name)
        try:
            self._apply(member, reader)
        except Refused as err:
            raise HostileImageError(f"layer {digest}: member {name} {err}",
                                    hint=_HOSTILE_HINT) from err
        except RecursionError as err:
            raise HostileImageError(f"layer {digest}: member {name}: directory tree too deep",
                                    hint=_HOSTILE_HINT) from err
        except OSError as err:
            if err.errno in _NO_SPACE:
                raise NoSpaceError(
                    f"no space left while applying layer {digest} (member {name})",
                    hint="grow the filesystem and apply the same layer again",
                ) from err
            if err.errno == errno.ENAMETOOLONG:
                raise HostileImageError(f"layer {digest}: member {name}: path too long",
                                        hint=_HOSTILE_HINT) from err
            raise ReconcileError(f"applying layer {digest} failed at member {name}: {err}",
                                 hint="check the target filesystem (dmesg) and retry") from err

    def _apply(self, m: TarMember, reader: TarReader) -> None:
        comps = check_name(m.name)
        if not -_TIME_MAX < m.mtime_ns < _TIME_MAX:
            raise Refused("has an out-of-range modification time")
        if not (0 <= m.uid <= _ID_MAX and 0 <= m.gid <= _ID_MAX):
            raise Refused(f"has an out-of-range owner {m.uid}:{m.gid}")
        view = self.view
        if not comps:  # "." or "./": the root itself
            if m.type != DIR:
                raise Refused("would replace the root directory with a non-directory")
            self._attrs(view.root, m, directory=True)
            self.unpacker.dir_time(view.root, m.mtime_ns)
            return
        base = comps[-1]
        parent_key = b"/".join(comps[:-1])
        if base.startswith(_WHITEOUT):
            self.whiteouts += 1
            self._whiteout(parent_key, base)
            return
        if b".wh." in parent_key and any(c.startswith(_WHITEOUT) for c in comps[:-1]):
            raise Refused("has a whiteout name as a directory component")
        path = view.resolve(parent_key) + b"/" + base
        kind = m.type
        if kind == REG:
            self._file(path, m, reader)
        elif kind == DIR:
            self._directory(path, m, parent_key + b"/" + base if parent_key else base)
        elif kind == SYM:
            self._symlink(path, m)
        elif kind == LNK:
            self._hardlink(path, m)
        elif kind in _NODE_KIND:
            self._node(path, m)
        else:
            raise Refused(f"has unsupported type {kind!r}" +
                          (" (sparse files are not supported)" if kind == b"S" else ""))
        view.mine.add(path)

    # --- one function per member type ----------------------------------------------------

    def _file(self, path: bytes, m: TarMember, reader: TarReader) -> None:
        try:
            fd = os.open(path, _O_NEW, 0o600)
        except FileExistsError:
            self.view.remove(path)
            fd = os.open(path, _O_NEW, 0o600)
        try:
            self.bytes += reader.copy_data(fd)
            os.fchown(fd, m.uid, m.gid)  # before chmod: chown clears setuid/setgid
            os.fchmod(fd, m.mode)
            if m.xattrs:  # after chown and write, which both drop security.capability
                self._xattrs(fd, m.xattrs)
            os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))
        finally:
            os.close(fd)
        self.files += 1

    def _directory(self, path: bytes, m: TarMember, key: bytes) -> None:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                self.view.remove(path, st)
                os.mkdir(path, 0o700)
        self._attrs(path, m, directory=True)
        self.view.known_dir(key, path)
        self.unpacker.dir_time(path, m.mtime_ns)

    def _symlink(self, path: bytes, m: TarMember) -> None:
        if not m.linkname or b"\0" in m.linkname:
            raise Refused("is a symlink with an empty or NUL-containing target")
        try:
            os.symlink(m.linkname, path)
        except FileExistsError:
            self.view.remove(path)
            os.symlink(m.linkname, path)
        self._attrs(path, m, symlink=True)

    def _hardlink(self, path: bytes, m: TarMember) -> None:
        source = self.view.link_source(m.linkname)
        if source == path:
            return  # a link to itself: already in place
        try:
            os.link(source, path, follow_symlinks=False)
        except FileExistsError:
            self.view.remove(path)
            try:
                os.link(source, path, follow_symlinks=False)
            except FileNotFoundError as err:  # it was inside what we just replaced
                raise Refused(f"is a hardlink to {shown(m.linkname)}, which is gone") from err

    def _node(self, path: bytes, m: TarMember) -> None:
        kind = _NODE_KIND[m.type]
        if not (0 <= m.devmajor < 1 << 32 and 0 <= m.devminor < 1 << 32):
            raise Refused("has an out-of-range device number")
        device = 0 if kind == stat.S_IFIFO else os.makedev(m.devmajor, m.devminor)
        try:
            os.mknod(path, kind | 0o600, device)
        except FileExistsError:
            self.view.remove(path)
            os.mknod(path, kind | 0o600, device)
        self._attrs(path, m)

    # --- attributes ------------------------------------------------------------------------

    def _attrs(self, path: bytes, m: TarMember, *, directory: bool = False,
               symlink: bool = False) -> None:
        """Owner, mode, xattrs and (except for directories) times of `path`, never followed."""
        os.chown(path, m.uid, m.gid, follow_symlinks=False)
        if not symlink:  # `path` is what we just created or lstat'ed: not a symlink
            os.chmod(path, m.mode)
        if m.xattrs:
            self._xattrs(path, m.xattrs)
        if not directory:
            os.utime(path, ns=(m.mtime_ns, m.mtime_ns), follow_symlinks=False)

    def _xattrs(self, target: int | bytes, xattrs: dict[bytes, bytes]) -> None:
        for key, value in xattrs.items():
            if key.startswith(_OVERLAY_XATTRS):
                self.skipped_xattrs += 1
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except ValueError as err:
                raise Refused(f"has an invalid extended attribute name {shown(key)}") from err
            except OSError as err:
                if err.errno in (errno.ENOTSUP, errno.EPERM):  # as container runtimes do
                    self.skipped_xattrs += 1
                elif err.errno in _NO_SPACE:
                    raise
                else:
                    raise Refused(f"has an invalid extended attribute {shown(key)}: "
                                  f"{err.strerror}") from err

    # --- whiteouts -------------------------------------------------------------------------

    def _whiteout(self, parent_key: bytes, base: bytes) -> None:
        view = self.view
        if base == _OPAQUE:
            directory = view.lookup(parent_key)
            if directory is not None:
                view.clear_lower(directory)
            return
        if base.startswith(b".wh..wh."):
            return  # other aufs metadata (.wh..wh.plnk, ...): ignored, as Docker does
        name = base[len(_WHITEOUT):]
        if name in (b"", b".", b".."):
            raise Refused("is a whiteout of '.' or '..' or of nothing")
        directory = view.lookup(parent_key)
        if directory is not None:
            view.whiteout(directory + b"/" + name)
