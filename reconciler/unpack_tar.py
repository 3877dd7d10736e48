"""Read a tar stream (ustar, GNU, PAX) from a file descriptor, header by header, without seeking.

Why not `tarfile`: this reader works in bytes end to end (names and xattr values stay exactly
as stored), copies member data from one reusable 1 MiB buffer straight into the destination
file descriptor (no per-chunk `bytes` objects), parses PAX records by their length prefix (no
regular expressions to backtrack on a hostile header), and is strict about the end of the
archive: a stream that stops before the end-of-archive marker is reported as truncated.
It knows the format only; what a member may do to a filesystem is decided by `unpack`.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_BUFFER = 1 << 20
_META_MAX = 16 << 20  # largest PAX / GNU long-name payload accepted

# Member types after normalisation ("\0" and "7" read as REG; an old-style "\0" member whose
# name ends in "/" reads as DIR, as tarfile and Go's archive/tar do).
REG, LNK, SYM, CHR, BLK, DIR, FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"
SPARSE = b"S"
# Types whose size field never announces data in the stream (tarfile and Go agree).
_HEADER_ONLY = frozenset((LNK, SYM, CHR, BLK, DIR, FIFO))
_XATTR_PREFIX = b"SCHILY.xattr."


class TarFormatError(Exception):
    """The stream is not a complete, well-formed tar archive."""


@dataclass(slots=True)
class TarMember:
    """One archive member, with every PAX / GNU extension already folded in."""

    name: bytes
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: bytes
    devmajor: int
    devminor: int
    xattrs: dict[bytes, bytes] | None


def _number(field: bytes) -> int:
    """A numeric header field: octal padded with spaces/NULs, or GNU base-256 (two's complement)."""
    if field[0] & 0x80:
        value = int.from_bytes(bytes((field[0] & 0x7F,)) + field[1:], "big")
        if field[0] & 0x40:
            value -= 1 << (8 * len(field) - 1)
        return value
    digits = field.strip(b" \0")
    if not digits:
        return 0
    if digits.isdigit():  # ASCII digits only: no sign, no "_", no inner NUL
        try:
            return int(digits, 8)
        except ValueError:
            pass
    raise TarFormatError(f"invalid octal number {field!r} in a header")


def _cstring(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _decimal(value: bytes, what: str) -> int:
    if not value.isdigit():
        raise TarFormatError(f"invalid PAX {what} {value!r}")
    return int(value)


def _pax_time(value: bytes) -> int:
    """A PAX time ("1700000000.123456789", maybe negative) as integer nanoseconds."""
    negative = value.startswith(b"-")
    whole, _, frac = value[negative:].partition(b".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise TarFormatError(f"invalid PAX time {value!r}")
    ns = int(whole) * 1_000_000_000 + int((frac + b"000000000")[:9])
    return -ns if negative else ns


def parse_pax(data: bytes) -> dict[bytes, bytes]:
    """The records of a PAX extended header: "<length> <key>=<value>\\n", binary-safe."""
    records: dict[bytes, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] == 0:  # some writers pad the payload with NULs
            if data.count(0, pos) != end - pos:
                raise TarFormatError("garbage after the PAX records")
            break
        space = data.find(b" ", pos, pos + 24)
        if space < 0 or not data[pos:space].isdigit():
            raise TarFormatError("malformed PAX record length")
        length = int(data[pos:space])
        stop = pos + length
        if length <= space - pos + 1 or stop > end or data[stop - 1] != 0x0A:
            raise TarFormatError("malformed PAX record")
        key, eq, value = data[space + 1 : stop - 1].partition(b"=")
        if not eq or not key:
            raise TarFormatError("malformed PAX record (no key)")
        records[key] = value
        pos = stop
    return records


class TarReader:
    """Members of the tar stream on file descriptor `fd`, in order; data is copied on demand."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray(_BUFFER)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._end = 0
        self._left = 0  # data bytes of the current member not consumed yet
        self._pad = 0  # padding after them
        self.eof = False  # the input stream has been read to its end

    # --- raw input -------------------------------------------------------------------------

    def _read(self, view: memoryview) -> int:
        got = os.readv(self._fd, [view])
        if not got:
            self.eof = True
        return got

    def _fill(self, need: int) -> bool:
        """Have `need` (<= buffer size) contiguous bytes at the read position; False on EOF."""
        avail = self._end - self._pos
        if avail >= need:
            return True
        if self._pos:
            if avail:
                self._buf[:avail] = bytes(self._view[self._pos : self._end])
            self._pos, self._end = 0, avail
        while self._end < need:
            got = self._read(self._view[self._end :])
            if not got:
                return False
            self._end += got
        return True

    def _skip(self, count: int) -> None:
        avail = self._end - self._pos
        if count <= avail:
            self._pos += count
            return
        count -= avail
        self._pos = self._end = 0
        while count:
            got = self._read(self._view)
            if not got:
                raise TarFormatError("stream ends inside a member")
            if got > count:
                self._pos, self._end = count, got
                return
            count -= got

    def _take(self, count: int) -> bytes:
        """The next `count` bytes (for PAX and long-name payloads)."""
        parts = []
        while count:
            if self._pos == self._end:
                self._pos, self._end = 0, self._read(self._view)
                if not self._end:
                    raise TarFormatError("stream ends inside an extended header")
            chunk = self._view[self._pos : self._pos + min(count, self._end - self._pos)]
            parts.append(bytes(chunk))
            self._pos += len(chunk)
            count -= len(chunk)
        return b"".join(parts)

    # --- members ---------------------------------------------------------------------------

    def copy_data(self, fd: int) -> int:
        """Write the current member's data to `fd`; the number of bytes written."""
        count, self._left = self._left, 0
        left = count
        view = self._view
        while left:
            avail = self._end - self._pos
            if not avail:
                self._pos = 0
                self._end = self._read(view)
                if not self._end:
                    raise TarFormatError("stream ends inside a member's data")
                avail = self._end
            chunk = view[self._pos : self._pos + min(avail, left)]
            self._pos += len(chunk)
            left -= len(chunk)
            while chunk:
                chunk = chunk[os.write(fd, chunk) :]
        return count

    def next(self) -> TarMember | None:
        """The next member, or None at the end-of-archive marker."""
        if self._left or self._pad:
            self._skip(self._left + self._pad)
            self._left = self._pad = 0
        pax: dict[bytes, bytes] = {}
        long_name = long_link = None
        while True:
            if self._end - self._pos < BLOCK and not self._fill(BLOCK):
                raise TarFormatError("stream ends before the end-of-archive marker")
            header = bytes(self._view[self._pos : self._pos + BLOCK])
            self._pos += BLOCK
            if header == _ZERO_BLOCK:
                return None
            _check_sum(header)
            kind = header[156:157]
            size = _number(header[124:136])
            if size < 0:
                raise TarFormatError("negative member size")
            if kind in (b"x", b"g", b"L", b"K"):
                if size > _META_MAX:
                    raise TarFormatError(f"extended header of {size} bytes is too large")
                payload = self._take(size)
                self._skip(-size % BLOCK)
                if kind == b"x":
                    pax.update(parse_pax(payload))
                elif kind == b"g":
                    parse_pax(payload)  # checked, then ignored like Go's archive/tar does
                elif kind == b"L":
                    long_name = payload.rstrip(b"\0")
                else:
                    long_link = payload.rstrip(b"\0")
                continue
            member = _member(header, kind, size, pax, long_name=long_name, long_link=long_link)
            self._left = 0 if member.type in _HEADER_ONLY else member.size
            self._pad = -self._left % BLOCK
            return member

    def drain(self) -> None:
        """Read and discard whatever follows the end-of-archive marker (record padding)."""
        self._pos = self._end = 0
        while self._read(self._view):
            pass


def _check_sum(header: bytes) -> None:
    # Each 256-byte half sums to at most 65280 < 65521, so Adler-32's low half is exactly
    # 1 + that sum: two C calls instead of iterating over 512 Python ints.
    total = (zlib.adler32(header[:256]) & 0xFFFF) + (zlib.adler32(header[256:]) & 0xFFFF) - 2
    unsigned = total - sum(header[148:156]) + 8 * 0x20
    stored = _number(header[148:156])
    if stored != unsigned:
        signed = unsigned - 256 * sum(1 for b in header[:148] + header[156:] if b > 0x7F)
        if stored != signed:
            raise TarFormatError("header checksum mismatch")


def _member(header: bytes, kind: bytes, size: int, pax: dict[bytes, bytes], *,
            long_name: bytes | None, long_link: bytes | None) -> TarMember:
    name = _cstring(header[0:100])
    if header[257:263] == b"ustar\0":  # POSIX ustar: a prefix field extends the name
        prefix = _cstring(header[345:500])
        if prefix:
            name = prefix + b"/" + name
    if long_name is not None:
        name = long_name
    linkname = long_link if long_link is not None else _cstring(header[157:257])
    if kind in (b"\0", b"7"):
        kind = DIR if kind == b"\0" and name.endswith(b"/") else REG
    uid = _number(header[108:116])
    gid = _number(header[116:124])
    mtime_ns = _number(header[136:148]) * 1_000_000_000
    xattrs: dict[bytes, bytes] | None = None
    if pax:
        for key, value in pax.items():
            if key.startswith(_XATTR_PREFIX):
                if xattrs is None:
                    xattrs = {}
                xattrs[key[len(_XATTR_PREFIX):]] = value
            elif not value:
                continue  # an empty value means "use the header field"
            elif key == b"path":
                name = value
            elif key == b"linkpath":
                linkname = value
            elif key == b"size":
                size = _decimal(value, "size")
            elif key == b"uid":
                uid = _decimal(value, "uid")
            elif key == b"gid":
                gid = _decimal(value, "gid")
            elif key == b"mtime":
                mtime_ns = _pax_time(value)
            elif key.startswith(b"GNU.sparse."):
                kind = SPARSE
    major = minor = 0
    if kind in (CHR, BLK):
        major, minor = _number(header[329:337]), _number(header[337:345])
    return TarMember(name, kind, _number(header[100:108]) & 0o7777, uid, gid, size, mtime_ns,
                     linkname, major, minor, xattrs)
