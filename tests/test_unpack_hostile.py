"""Hostile layers are refused with HostileImageError, and nothing outside the root changes."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from reconciler.errors import HostileImageError
from reconciler.tools._run import run
from reconciler.unpack import Layer, apply_layer

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"

Entry = tuple[tarfile.TarInfo, bytes | None]


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, *,
          linkname: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.REGTYPE and data is None:
        data = b"data"
    return info, data


def tar_bytes(entries: list[Entry]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def gz_layer(path: Path, blob: bytes, media_type: str = GZIP) -> Layer:
    path.write_bytes(blob)
    return Layer(path, media_type, "sha256:" + "ab" * 32)


def state(path: Path) -> dict[str, tuple[int, int, int]]:
    """Listing of `path` with each entry's mode, size and mtime (symlinks not followed)."""
    out = {}
    for p in [path, *path.rglob("*")]:
        st = os.lstat(p)
        out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _children() -> str:
    return Path(f"/proc/self/task/{os.getpid()}/children").read_text()


class Jail:
    """A root to unpack into, next to a canary directory that must never change."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "jail" / "root"
        self.root.mkdir(parents=True)
        self.canary = tmp_path / "canary"
        self.canary.mkdir()
        (self.canary / "file").write_bytes(b"canary")
        self.blobs = tmp_path / "blobs"
        self.blobs.mkdir()
        self._before = self.outside()

    def outside(self) -> dict[str, tuple[int, int, int]]:
        everything = state(self.tmp)
        return {k: v for k, v in everything.items()
                if not k.startswith((str(self.root), str(self.blobs)))}

    def refuses(self, layer: Layer, *fragments: str) -> str:
        """Apply `layer`, expect HostileImageError naming `fragments`, check the outside."""
        children = _children()
        with pytest.raises(HostileImageError) as caught:
            apply_layer(self.root, layer)
        assert _children() == children  # the decompressor was stopped and reaped
        message = str(caught.value)
        for fragment in fragments:
            assert fragment in message
        assert self.outside() == self._before
        return message

    def layer(self, entries: list[Entry]) -> Layer:
        return gz_layer(self.blobs / "layer", gzip.compress(tar_bytes(entries)))


@pytest.fixture
def jail(tmp_path: Path) -> Jail:
    return Jail(tmp_path)


def test_dotdot_path_is_refused(jail: Jail) -> None:
    """A member named ../x is refused, naming the layer and the member."""
    jail.refuses(jail.layer([entry("ok"), entry("../escape")]), "sha256:abab", "'../escape'")
    assert not (jail.root.parent / "escape").exists()


def test_dotdot_in_the_middle_is_refused(jail: Jail) -> None:
    """A member named a/../../x is refused even though a/.. alone would stay inside."""
    jail.refuses(jail.layer([entry("a", tarfile.DIRTYPE), entry("a/../../x")]), "'a/../../x'")


def test_absolute_path_is_refused(jail: Jail) -> None:
    """A member with an absolute name is refused rather than written anywhere."""
    name = str(jail.canary / "pwned")
    jail.refuses(jail.layer([entry(name)]), repr(name), "absolute")


def test_relative_symlink_escape_is_refused(jail: Jail) -> None:
    """Writing through a relative symlink that climbs above the root is refused."""
    with pytest.raises(HostileImageError, match="points outside the root"):
        apply_layer(jail.root, jail.layer([
            entry("up", tarfile.SYMTYPE, linkname="../../../../../.." + str(jail.canary)),
            entry("up/file", data=b"pwned"),
        ]))
    assert jail.outside() == jail._before


def test_relative_symlink_inside_the_root_is_followed(jail: Jail) -> None:
    """A relative symlink that stays inside (lib -> usr/lib) is written through normally."""
    apply_layer(jail.root, jail.layer([
        entry("usr", tarfile.DIRTYPE), entry("usr/lib", tarfile.DIRTYPE),
        entry("lib", tarfile.SYMTYPE, linkname="usr/lib"),
        entry("lib/libc.so", data=b"elf"),
    ]))
    assert (jail.root / "usr/lib/libc.so").read_bytes() == b"elf"


def test_absolute_symlink_escape_stays_inside(jail: Jail) -> None:
    """Writing through an absolute symlink to a host directory lands inside the root."""
    apply_layer(jail.root, jail.layer([
        entry("evil", tarfile.SYMTYPE, linkname=str(jail.canary)),
        entry("evil/file", data=b"pwned"),
        entry("evil/sub/new", data=b"new"),
    ]))
    assert (jail.root / str(jail.canary).lstrip("/") / "sub" / "new").exists()
    assert jail.outside() == jail._before


def test_hardlink_to_outside_is_refused(jail: Jail) -> None:
    """A hardlink whose target climbs out with .. is refused."""
    target = "../../canary/file"
    jail.refuses(jail.layer([entry("h", tarfile.LNKTYPE, linkname=target)]), "'h'", target)


def test_hardlink_to_absolute_path_is_refused(jail: Jail) -> None:
    """A hardlink to an absolute host path is refused."""
    target = str(jail.canary / "file")
    jail.refuses(jail.layer([entry("h", tarfile.LNKTYPE, linkname=target)]), "'h'", "absolute")


def test_hardlink_through_symlink_cannot_reach_outside(jail: Jail) -> None:
    """A hardlink target behind an absolute symlink is looked up inside the root (missing)."""
    jail.refuses(jail.layer([
        entry("evil", tarfile.SYMTYPE, linkname=str(jail.canary)),
        entry("h", tarfile.LNKTYPE, linkname="evil/file"),
    ]), "'h'", "does not exist")
    assert os.lstat(jail.canary / "file").st_nlink == 1


def test_hardlink_to_missing_target_is_refused(jail: Jail) -> None:
    """A hardlink to a path that does not exist (yet) is refused."""
    jail.refuses(jail.layer([entry("h", tarfile.LNKTYPE, linkname="later"), entry("later")]),
                 "'h'", "does not exist")


def test_hardlink_to_directory_is_refused(jail: Jail) -> None:
    """A hardlink to a directory is refused."""
    jail.refuses(jail.layer([entry("d", tarfile.DIRTYPE),
                             entry("h", tarfile.LNKTYPE, linkname="d")]), "'h'", "directory")


@pytest.mark.parametrize("name", ["a/.wh...", ".wh..", ".wh."])
def test_whiteout_of_dot_or_dotdot_is_refused(jail: Jail, name: str) -> None:
    """Whiteouts naming '..', '.' or nothing are refused."""
    jail.refuses(jail.layer([entry("a", tarfile.DIRTYPE), entry(name)]), repr(name))


def test_long_component_is_refused(jail: Jail) -> None:
    """A name component longer than 255 bytes is refused."""
    name = "dir/" + "x" * 300
    jail.refuses(jail.layer([entry(name)]), "255", name[:40])


def test_long_path_is_refused(jail: Jail) -> None:
    """A path longer than 4095 bytes is refused."""
    name = "/".join(["y" * 200] * 21)
    jail.refuses(jail.layer([entry(name)]), "4095", "yyyy")


def test_nul_byte_in_name_is_refused(jail: Jail) -> None:
    """A NUL byte inside a (PAX) member name is refused."""
    info, data = entry("x")
    info.pax_headers = {"path": "a\x00" + "b" * 120}
    jail.refuses(jail.layer([(info, data)]), "NUL", "a\\x00")


def test_symlink_loop_is_refused(jail: Jail) -> None:
    """A parent that loops through symlinks is refused after 40 hops."""
    jail.refuses(jail.layer([entry("a", tarfile.SYMTYPE, linkname="b"),
                             entry("b", tarfile.SYMTYPE, linkname="a"),
                             entry("a/x")]), "'a/x'", "symbolic links")


def test_parent_that_is_a_file_is_refused(jail: Jail) -> None:
    """An entry under a regular file is refused (nothing is replaced implicitly)."""
    jail.refuses(jail.layer([entry("f"), entry("f/x")]), "'f/x'", "not a directory")


def test_root_replaced_by_a_file_is_refused(jail: Jail) -> None:
    """A non-directory member named '.' is refused."""
    jail.refuses(jail.layer([entry("./")]), "root")


def test_unsupported_member_type_is_refused(jail: Jail) -> None:
    """An unknown member type is refused, naming the member."""
    info, _ = entry("odd")
    info.type = b"Z"
    jail.refuses(jail.layer([(info, None)]), "'odd'", "unsupported type")


def test_sparse_member_is_refused(jail: Jail) -> None:
    """GNU sparse members are refused as unsupported rather than expanded."""
    staging = jail.tmp / "blobs" / "sparse"
    staging.mkdir()
    with open(staging / "holes", "wb") as f:
        f.truncate(8 << 20)
        f.write(b"data")
    tar_path = jail.blobs / "sparse.tar"
    run(["tar", "--sparse", "--format=gnu", "-cf", str(tar_path), "-C", str(staging), "holes"])
    jail.refuses(Layer(tar_path, TAR, "sha256:sparse"), "'holes'", "sparse")


def test_truncated_gzip_layer_is_refused(jail: Jail) -> None:
    """A gzip layer cut short is reported as truncated or corrupt."""
    blob = gzip.compress(tar_bytes([entry("a", data=os.urandom(200_000)), entry("b")]))
    jail.refuses(gz_layer(jail.blobs / "cut", blob[: len(blob) // 2]), "truncated or corrupt")


def test_gzip_without_trailer_is_refused(jail: Jail) -> None:
    """A gzip layer whose tar part is complete but whose trailer is cut is still refused."""
    blob = gzip.compress(tar_bytes([entry("a")]))
    jail.refuses(gz_layer(jail.blobs / "cut", blob[:-6]), "truncated or corrupt")


def test_corrupt_gzip_layer_is_refused(jail: Jail) -> None:
    """Damaged gzip bytes are reported as a corrupt layer."""
    blob = bytearray(gzip.compress(tar_bytes([entry("a", data=os.urandom(100_000))])))
    for i in range(200, 400):
        blob[i] ^= 0x5A
    jail.refuses(gz_layer(jail.blobs / "bad", bytes(blob)), "truncated or corrupt")


def test_truncated_plain_tar_is_refused(jail: Jail) -> None:
    """A plain tar without its end-of-archive marker is reported as truncated."""
    raw = tar_bytes([entry("a", data=b"x" * 5000)])
    jail.refuses(gz_layer(jail.blobs / "cut", raw[:1024], TAR), "truncated or corrupt")
    jail.refuses(gz_layer(jail.blobs / "cut", raw[:512 + 5120], TAR), "truncated or corrupt")


def test_bad_header_checksum_is_refused(jail: Jail) -> None:
    """A header whose checksum does not match is reported as corrupt."""
    raw = bytearray(tar_bytes([entry("a")]))
    raw[0] ^= 1
    jail.refuses(gz_layer(jail.blobs / "bad", bytes(raw), TAR), "checksum")


def test_unknown_media_type_is_refused(jail: Jail) -> None:
    """A layer of an unknown media type is refused, naming the media type."""
    media = "application/vnd.example.layer.v1.tar+lz4"
    layer = Layer(jail.layer([entry("a")]).path, media, "sha256:odd")
    jail.refuses(layer, media, "sha256:odd")
