"""Layer application against real layers built by GNU tar and Python tarfile (runs as root)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.errors import NoSpaceError, SystemLayoutError
from reconciler.tools import _run
from reconciler.tools._run import run
from reconciler.unpack import (
    GZIP_TOOLS,
    Layer,
    Unpacker,
    UnpackStats,
    apply_layer,
    apply_layers,
)
from reconciler.unpack_tar import TarReader

TAR = "application/vnd.oci.image.layer.v1.tar"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
NS = 1_000_000_000


# --- helpers ---------------------------------------------------------------------------------

def snapshot(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Everything tar can carry, for every path under `root` (root itself is b".")."""
    out: dict[bytes, tuple[object, ...]] = {}
    inodes: dict[int, bytes] = {}
    base = os.fsencode(root)

    def visit(path: bytes, rel: bytes) -> None:
        st = os.lstat(path)
        kind = stat.S_IFMT(st.st_mode)
        if stat.S_ISREG(kind):
            with open(path, "rb") as f:
                body: object = hashlib.sha256(f.read()).hexdigest()
            body = (body, inodes.setdefault(st.st_ino, rel))  # hardlinks share the first name
        elif stat.S_ISLNK(kind):
            body = os.readlink(path)
        elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
            body = st.st_rdev
        else:
            body = None
        xattrs = {k: os.getxattr(path, k, follow_symlinks=False)
                  for k in sorted(os.listxattr(path, follow_symlinks=False))}
        mode = None if stat.S_ISLNK(kind) else stat.S_IMODE(st.st_mode)
        out[rel] = (kind, mode, st.st_uid, st.st_gid, st.st_mtime_ns, body, xattrs)
        if stat.S_ISDIR(kind):
            for name in sorted(os.listdir(path)):
                visit(path + b"/" + name, name if rel == b"." else rel + b"/" + name)

    visit(base, b".")
    return out


def gnu_tar(staging: Path, out_dir: Path, *, fmt: str = "posix", compress: str = "gzip",
            name: str = "layer") -> Layer:
    """A layer made by GNU tar from `staging`, compressed with pigz / zstd or not at all."""
    tar_path = out_dir / f"{name}.tar"
    xattrs = ["--xattrs", "--xattrs-include=*"] if fmt == "posix" else []
    run(["tar", *xattrs, "--numeric-owner", f"--format={fmt}", "-cf", str(tar_path),
         "-C", str(staging), "."])
    if compress == "plain":
        return Layer(tar_path, TAR, f"sha256:{name}")
    tool, media = {"gzip": ("pigz", GZIP), "zstd": ("zstd", ZSTD)}[compress]
    blob = out_dir / f"{name}.{compress}"
    with open(blob, "wb") as f:
        run([tool, "-c", str(tar_path)], stdout=f)
    return Layer(blob, media, f"sha256:{name}")


def py_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Layer:
    """A gzip layer written by Python tarfile with exactly these members, in this order."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=1))
    return Layer(path, GZIP, f"sha256:{path.name}")


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, *,
          linkname: str = "", mode: int | None = None, mtime: int = 1_600_000_000,
          pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode if mode is not None else 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = mtime
    if pax:
        info.pax_headers = dict(pax)
    if kind == tarfile.REGTYPE and data is None:
        data = b""
    return info, data


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    """A tree with every member type and attribute tar can carry."""
    s = tmp_path / "staging"
    s.mkdir()
    (s / "etc").mkdir()
    (s / "etc" / "hostname").write_bytes(b"node\n")
    (s / "empty").write_bytes(b"")
    (s / "block512").write_bytes(os.urandom(512))
    (s / "big").write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # crosses the 1 MiB buffer
    (s / "exact1m").write_bytes(os.urandom(1 << 20))
    suid = s / "usr" / "bin" / "passwd"
    suid.parent.mkdir(parents=True)
    suid.write_bytes(b"\x7fELF suid")
    os.chmod(suid, 0o4755)
    sgid = s / "usr" / "bin" / "wall"
    sgid.write_bytes(b"sgid")
    os.chown(sgid, 0, 5)
    os.chmod(sgid, 0o2755)
    ping = s / "usr" / "bin" / "ping"
    ping.write_bytes(b"ping")
    os.chmod(ping, 0o755)
    run(["setcap", "cap_net_raw+ep", str(ping)])
    os.setxattr(s / "etc" / "hostname", "user.blob", b"\x00\xff\x80binary\n=")
    tmp = s / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)
    private = s / "home" / "user"
    private.mkdir(parents=True)
    os.chown(private, 1000, 1000)
    os.chmod(private, 0o700)
    big_uid = private / "file"
    big_uid.write_bytes(b"owned")
    os.chown(big_uid, 3_000_000, 65534)  # beyond 7 octal digits: base-256 in GNU format
    os.symlink("hostname", s / "etc" / "alias")
    os.symlink("/usr/lib/dangling-absolute", s / "abs-link")
    os.chown(s / "abs-link", 12, 34, follow_symlinks=False)
    os.link(s / "etc" / "hostname", s / "etc" / "hostname.hard")
    os.link(s / "etc" / "hostname", s / "usr" / "hostname.hard2")
    dev = s / "dev"
    dev.mkdir()
    os.mknod(dev / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(dev / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    os.mkfifo(dev / "fifo", 0o600)
    deep = s / ("d" * 60) / ("e" * 60) / ("f" * 60)
    deep.mkdir(parents=True)
    (deep / ("long-name-" + "x" * 120)).write_bytes(b"long")
    os.symlink("t" * 150, deep / "long-target")
    os.link(deep / ("long-name-" + "x" * 120), deep / ("hard-" + "y" * 120))
    (s / os.fsdecode(b"\xff\xfe-not-utf8")).write_bytes(b"bytes name")
    os.utime(s / "etc" / "hostname", ns=(5, 1_234_567_890_123_456_789))
    for name in ("etc", "dev", "usr/bin"):
        os.utime(s / name, ns=(0, 1_500_000_000 * NS + 42))
    os.chmod(s, 0o755)
    return s


def whole_seconds(root: Path) -> None:
    """Truncate every mtime under `root` to a whole second (the GNU format keeps no more)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            p = os.path.join(dirpath, name)
            t = os.lstat(p).st_mtime_ns // NS * NS
            os.utime(p, ns=(t, t), follow_symlinks=False)
    t = os.lstat(root).st_mtime_ns // NS * NS
    os.utime(root, ns=(t, t))


# --- round trips -----------------------------------------------------------------------------

@pytest.mark.parametrize("compress", ["gzip", "zstd", "plain"])
def test_every_type_and_attribute_round_trips(tmp_path: Path, staging: Path,
                                              compress: str) -> None:
    """A GNU tar (posix, xattrs) layer reproduces its source tree exactly, whatever compression."""
    layer = gnu_tar(staging, tmp_path, compress=compress)
    root = tmp_path / "root"
    root.mkdir()
    stats = apply_layer(root, layer)
    assert snapshot(root) == snapshot(staging)
    with tarfile.open(tmp_path / "layer.tar") as tar:
        regular = [m for m in tar if m.isreg()]
    assert (stats.files, stats.bytes_written) == (len(regular), sum(m.size for m in regular))


def test_gnu_format_round_trips(tmp_path: Path, staging: Path) -> None:
    """GNU-format layers (long-name headers, base-256 ids) reproduce the tree but for xattrs."""
    for p in [staging, *staging.rglob("*")]:
        for key in os.listxattr(p, follow_symlinks=False):
            os.removexattr(p, key, follow_symlinks=False)
    whole_seconds(staging)
    layer = gnu_tar(staging, tmp_path, fmt="gnu")
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, layer)
    assert snapshot(root) == snapshot(staging)


def test_binary_capability_xattr_round_trips_exactly(tmp_path: Path, staging: Path) -> None:
    """security.capability set by setcap comes back byte for byte, next to a setuid bit."""
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, gnu_tar(staging, tmp_path))
    want = os.getxattr(staging / "usr/bin/ping", "security.capability")
    assert len(want) == 20 and b"\x00" in want
    assert os.getxattr(root / "usr/bin/ping", "security.capability") == want
    assert os.lstat(root / "usr/bin/passwd").st_mode & 0o7777 == 0o4755
    assert os.lstat(root / "usr/bin/wall").st_mode & 0o7777 == 0o2755


def test_hardlinks_share_an_inode(tmp_path: Path, staging: Path) -> None:
    """Hardlink members become links to the same inode, not copies."""
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, gnu_tar(staging, tmp_path))
    first = os.lstat(root / "etc/hostname")
    assert first.st_nlink == 3
    assert os.lstat(root / "usr/hostname.hard2").st_ino == first.st_ino


def only_gzip_tool(monkeypatch: pytest.MonkeyPatch, tool: str) -> None:
    """Pretend `tool` is the only gzip decompressor installed."""
    real = _run.require

    def require(name: str) -> str:
        if name in GZIP_TOOLS and name != tool:
            raise SystemLayoutError(f"no {name}")
        return real(name)

    monkeypatch.setattr(_run, "require", require)


@pytest.mark.parametrize("tool", GZIP_TOOLS)
def test_each_gzip_tool_gives_the_same_tree(tmp_path: Path, staging: Path, tool: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """igzip, pigz and the gzip fallback decompress a layer to the same tree."""
    only_gzip_tool(monkeypatch, tool)
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, gnu_tar(staging, tmp_path))
    assert snapshot(root) == snapshot(staging)


def test_docker_media_type_is_gzip(tmp_path: Path) -> None:
    """The Docker rootfs.diff.tar.gzip media type is read as gzip."""
    layer = py_tar(tmp_path / "l", [entry("a", data=b"x")])
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, Layer(layer.path, DOCKER_GZIP, layer.digest))
    assert (root / "a").read_bytes() == b"x"


@pytest.mark.parametrize("tool", GZIP_TOOLS)
def test_bytes_after_the_gzip_stream_are_ignored(tmp_path: Path, tool: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Junk after a complete gzip member is ignored by every gzip decompressor alike."""
    only_gzip_tool(monkeypatch, tool)
    layer = py_tar(tmp_path / "l", [entry("a", data=b"x")])
    layer.path.write_bytes(layer.path.read_bytes() + b"trailing junk")
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, layer)
    assert (root / "a").read_bytes() == b"x"


def test_reader_agrees_with_tarfile(tmp_path: Path, staging: Path) -> None:
    """The streaming reader sees the same members as tarfile in ustar, GNU and PAX archives."""
    archives = [gnu_tar(staging, tmp_path, compress="plain").path]
    whole_seconds(staging)
    archives.append(gnu_tar(staging, tmp_path, fmt="gnu", compress="plain", name="gnu").path)
    ustar = tmp_path / "ustar.tar"  # a name that needs the ustar prefix field
    with tarfile.open(ustar, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(staging / "etc" / "alias", arcname="p" * 120 + "/" + "n" * 90)
        tar.add(staging / "big", arcname="p" * 120 + "/big")
    archives.append(ustar)
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        path = tmp_path / f"py{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            tar.add(staging, arcname=".")
        archives.append(path)
    for path in archives:
        with tarfile.open(path) as tar:
            want = [(os.fsencode(m.name).rstrip(b"/"), m.size if m.isreg() else 0, m.mode,
                     m.uid, m.gid, int(m.mtime), os.fsencode(m.linkname)) for m in tar]
        fd = os.open(path, os.O_RDONLY)
        try:
            reader = TarReader(fd)
            got = []
            while (m := reader.next()) is not None:
                got.append((m.name.rstrip(b"/"), m.size if m.type == b"0" else 0, m.mode,
                            m.uid, m.gid, m.mtime_ns // NS, m.linkname))
        finally:
            os.close(fd)
        assert got == want, path


def read_through_pipe(blob: bytes, chunks: list[int]) -> list[tuple[bytes, bytes, bytes]]:
    """Members (name, data, linkname) read from `blob`, fed through a pipe in uneven writes."""
    rfd, wfd = os.pipe()
    chunks = [*chunks, 65_536]  # keeps the number of writes small whatever was drawn

    def feed() -> None:
        pos, i = 0, 0
        while pos < len(blob):
            step = chunks[i % len(chunks)]
            os.write(wfd, blob[pos : pos + step])
            pos, i = pos + step, i + 1
        os.close(wfd)

    writer = threading.Thread(target=feed)
    writer.start()
    got = []
    try:
        reader = TarReader(rfd)
        while (m := reader.next()) is not None:
            sink = os.memfd_create("member")
            reader.copy_data(sink)
            os.lseek(sink, 0, os.SEEK_SET)
            got.append((m.name, os.read(sink, 1 << 24), m.linkname))
            os.close(sink)
        reader.drain()
    finally:
        writer.join()
        os.close(rfd)
    return got


@settings(max_examples=25, deadline=None)
@given(
    members=st.lists(st.tuples(st.binary(min_size=1, max_size=180).filter(
        lambda n: b"\0" not in n and b"/" not in n),
        st.one_of(st.integers(0, 1500), st.integers((1 << 20) - 600, (1 << 20) + 600))),
        min_size=1, max_size=12),
    chunks=st.lists(st.integers(1, 70_000), min_size=1, max_size=6),
)
def test_reader_handles_any_chunking(members: list[tuple[bytes, int]],
                                     chunks: list[int]) -> None:
    """Names and data come out intact however the stream is split into reads."""
    raw = io.BytesIO()
    want = []
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, (name, size) in enumerate(members):
            info = tarfile.TarInfo(os.fsdecode(b"%d-" % i + name))
            data = bytes([i % 251]) * size
            info.size = size
            tar.addfile(info, io.BytesIO(data))
            want.append((b"%d-" % i + name, data, b""))
    assert read_through_pipe(raw.getvalue(), chunks) == want


def test_reader_takes_large_pax_headers(tmp_path: Path) -> None:
    """A PAX header bigger than the read buffer is read whole (binary xattr kept exact)."""
    raw = io.BytesIO()
    value = bytes(range(256)) * 12_000  # 3 MiB, every byte value
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"comment": "c" * (2 << 20),
                            "SCHILY.xattr.user.big": value.decode("utf-8", "surrogateescape")}
        tar.addfile(info, io.BytesIO(b""))
    path = tmp_path / "t.tar"
    path.write_bytes(raw.getvalue())
    fd = os.open(path, os.O_RDONLY)
    try:
        member = TarReader(fd).next()
    finally:
        os.close(fd)
    assert member is not None and member.xattrs == {b"user.big": value}


# --- merging layers --------------------------------------------------------------------------

def lower(tmp_path: Path) -> Layer:
    return py_tar(tmp_path / "lower", [
        entry("a", tarfile.DIRTYPE), entry("a/x", data=b"x"), entry("a/y", data=b"y"),
        entry("a/sub", tarfile.DIRTYPE), entry("a/sub/z", data=b"z"), entry("b", data=b"b"),
        entry("t1", tarfile.DIRTYPE), entry("t2", tarfile.DIRTYPE),
        entry("d", tarfile.SYMTYPE, linkname="t1"),
    ])


def test_whiteout_removes_lower_entries_and_is_not_created(tmp_path: Path) -> None:
    """DIR/.wh.NAME removes DIR/NAME from lower layers; a whiteout of nothing is fine."""
    upper = py_tar(tmp_path / "upper", [
        entry(".wh.b"), entry("a/.wh.x"), entry("a/.wh.sub"), entry(".wh.missing"),
    ])
    root = tmp_path / "root"
    root.mkdir()
    stats = apply_layers(root, [lower(tmp_path), upper])
    assert listing(root / "a") == ["y"]
    assert not (root / "b").exists()
    assert not any(".wh." in p for p in listing(root))
    assert stats.whiteouts == 4


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_directory_keeps_same_layer_entries(tmp_path: Path, marker_first: bool) -> None:
    """An opaque marker drops what lower layers put in DIR and keeps this layer's entries."""
    marker = [entry("a/.wh..wh..opq")]
    siblings = [entry("a/new", data=b"n"), entry("a/sub", tarfile.DIRTYPE),
                entry("a/sub/n2", data=b"2"), entry("a/implicit/deep", data=b"d")]
    upper = py_tar(tmp_path / "upper", [entry("a", tarfile.DIRTYPE),
                                       *(marker + siblings if marker_first else
                                         siblings + marker)])
    root = tmp_path / "root"
    root.mkdir()
    apply_layers(root, [lower(tmp_path), upper])
    assert listing(root / "a") == ["implicit", "implicit/deep", "new", "sub", "sub/n2"]
    assert (root / "b").read_bytes() == b"b"


def test_directory_times_are_set_after_all_layers(tmp_path: Path) -> None:
    """A directory keeps its last declared time even when a later layer adds children."""
    first = py_tar(tmp_path / "first", [entry("a", tarfile.DIRTYPE, mtime=1_000),
                                        entry("a/x", data=b"x")])
    second = py_tar(tmp_path / "second", [entry("a/y", data=b"y"), entry("b/c", data=b"c")])
    root = tmp_path / "root"
    root.mkdir()
    apply_layers(root, [first, second])
    assert os.lstat(root / "a").st_mtime_ns == 1_000 * NS
    assert listing(root / "a") == ["x", "y"]


def test_replacing_a_symlinked_parent_redirects_later_entries(tmp_path: Path) -> None:
    """Once a symlink parent is replaced, later entries follow the new one (no stale cache)."""
    upper = py_tar(tmp_path / "upper", [
        entry("d/one", data=b"1"), entry("d", tarfile.SYMTYPE, linkname="/t2"),
        entry("d/two", data=b"2"), entry("a/sub/f", data=b"f"),
        entry("a/sub", tarfile.SYMTYPE, linkname="../t1"), entry("a/sub/g", data=b"g"),
    ])
    root = tmp_path / "root"
    root.mkdir()
    apply_layers(root, [lower(tmp_path), upper])
    assert listing(root / "t1") == ["g", "one"]
    assert listing(root / "t2") == ["two"]
    assert os.readlink(root / "a" / "sub") == "../t1"


def test_replacing_across_types(tmp_path: Path) -> None:
    """A file replaces a directory tree, a directory replaces a file, and a directory over a
    directory keeps its contents but takes the new attributes."""
    upper = py_tar(tmp_path / "upper", [
        entry("a/sub", data=b"now a file"), entry("b", tarfile.DIRTYPE, mode=0o711),
        entry("a", tarfile.DIRTYPE, mode=0o750, mtime=1_000),
    ])
    root = tmp_path / "root"
    root.mkdir()
    apply_layers(root, [lower(tmp_path), upper])
    assert (root / "a" / "sub").read_bytes() == b"now a file"
    assert (root / "b").is_dir() and os.lstat(root / "b").st_mode & 0o777 == 0o711
    assert listing(root / "a") == ["sub", "x", "y"]
    st = os.lstat(root / "a")
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o750, 1_000 * NS)


def test_absolute_symlink_parent_resolves_inside_root(tmp_path: Path) -> None:
    """Writing through `evil -> /abs/outside` lands in root/abs/outside; outside is untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_bytes(b"canary")
    before = snapshot(outside)
    layer = py_tar(tmp_path / "l", [
        entry("evil", tarfile.SYMTYPE, linkname=str(outside)),
        entry("evil/canary", data=b"pwned"), entry("evil/new", data=b"new"),
    ])
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, layer)
    assert snapshot(outside) == before
    inside = root / str(outside).lstrip("/")
    assert (inside / "canary").read_bytes() == b"pwned"


def test_overlay_xattrs_are_dropped(tmp_path: Path) -> None:
    """Overlayfs metadata xattrs in a layer are not applied; other xattrs are."""
    layer = py_tar(tmp_path / "l", [entry("d", tarfile.DIRTYPE, pax={
        "SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.keep": "k"})])
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, layer)
    assert os.listxattr(root / "d") == ["user.keep"]


def test_root_entry_sets_root_attributes(tmp_path: Path) -> None:
    """The "./" member gives the root its mode, owner and time."""
    layer = py_tar(tmp_path / "l", [entry("./", tarfile.DIRTYPE, mode=0o750, mtime=77),
                                    entry("./f", data=b"f")])
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, layer)
    st = os.lstat(root)
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o750, 77 * NS)


# --- re-application --------------------------------------------------------------------------

def test_reapplying_a_layer_converges(tmp_path: Path, staging: Path) -> None:
    """Applying the same layers again (in one session) gives the same tree as applying once."""
    whiteouts = py_tar(tmp_path / "upper", [
        entry("etc", tarfile.DIRTYPE), entry("etc/new", data=b"n"), entry("etc/.wh..wh..opq"),
        entry("usr/.wh.hostname.hard2"), entry("dev/.wh.fifo"),
    ])
    layers = [gnu_tar(staging, tmp_path), whiteouts]
    once, twice = tmp_path / "once", tmp_path / "twice"
    once.mkdir()
    twice.mkdir()
    apply_layers(once, layers)
    unpacker = Unpacker(twice)
    for layer in [*layers, layers[1], *layers]:
        unpacker.apply(layer)
    unpacker.finish()
    assert snapshot(twice) == snapshot(once)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mount, unmounted afterwards whatever happens."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)])
    try:
        yield mnt
    finally:
        run(["umount", "-l", str(mnt)])


def test_enospc_raises_no_space_and_retry_converges(tmp_path: Path, small_tmpfs: Path) -> None:
    """Running out of space names the layer and member; after growing, re-applying converges."""
    layer = py_tar(tmp_path / "l", [
        entry("./", tarfile.DIRTYPE, mode=0o755, mtime=5),
        entry("etc", tarfile.DIRTYPE), entry("etc/a", data=b"a" * 1000),
        entry("big", data=os.urandom(2 << 20)),
        entry("etc/b", data=b"b"), entry("etc/.wh..wh..opq"),
    ])
    unpacker = Unpacker(small_tmpfs)
    with pytest.raises(NoSpaceError) as caught:
        unpacker.apply(layer)
    assert layer.digest in str(caught.value) and "'big'" in str(caught.value)
    run(["mount", "-o", "remount,size=16m", str(small_tmpfs)])
    stats = unpacker.apply(layer)
    unpacker.finish()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    apply_layer(fresh, layer)
    assert snapshot(small_tmpfs) == snapshot(fresh)
    assert stats == UnpackStats(entries=6, files=3, bytes_written=(2 << 20) + 1001, whiteouts=1)
