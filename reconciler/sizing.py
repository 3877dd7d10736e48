"""How big the new ext4 image must be, from the layer blobs alone (no decompression pass).

gzip keeps the uncompressed size (mod 2**32) in its last four bytes and zstd may keep it in the
frame header; both are read directly. Layers whose size cannot be read this way are assumed to
expand 5x. The write step grows the filesystem online if the estimate proves short.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.unpack import Layer

MIB = 1 << 20
FIXED_OVERHEAD = 48 * MIB   # journal, group descriptors, lost+found, root-owned reserve
RELATIVE_OVERHEAD = 0.15    # inode tables (one 256-byte inode per 4 KiB), block rounding
FALLBACK_RATIO = 5
GZIP_MAX_RATIO = 1032       # deflate cannot expand data by more than this


def uncompressed_size(layer: Layer) -> int:
    """Best knowledge of the layer's tar size without decompressing it."""
    size = layer.path.stat().st_size
    if layer.media_type.endswith("gzip"):
        with open(layer.path, "rb") as blob:
            blob.seek(-4, 2)
            isize = int.from_bytes(blob.read(4), "little")
        # ISIZE is mod 2**32: add wraps until it is at least the compressed size.
        while isize < size:
            isize += 1 << 32
        if isize > size * GZIP_MAX_RATIO:   # not a real trailer (truncated or forged blob)
            return size * FALLBACK_RATIO
        return isize
    if layer.media_type.endswith("zstd"):
        content = _zstd_content_size(layer)
        return content if content is not None else size * FALLBACK_RATIO
    if layer.media_type.endswith(".tar") or layer.media_type.endswith("diff.tar"):
        return size
    return size * FALLBACK_RATIO


def _zstd_content_size(layer: Layer) -> int | None:
    with open(layer.path, "rb") as blob:
        head = blob.read(18)
    if len(head) < 6 or head[:4] != b"\x28\xb5\x2f\xfd":
        return None
    fhd = head[4]
    fcs_flag, single = fhd >> 6, (fhd >> 5) & 1
    did_size = (0, 1, 2, 4)[fhd & 3]
    pos = 5 + (0 if single else 1) + did_size
    width = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if width == 0 or len(head) < pos + width:
        return None
    value = int.from_bytes(head[pos:pos + width], "little")
    return value + 256 if width == 2 else value


def image_size(layers: Sequence[Layer]) -> int:
    """Bytes to allocate for the image file, rounded up to a whole MiB."""
    content = sum(uncompressed_size(layer) for layer in layers)
    total = int(content * (1 + RELATIVE_OVERHEAD)) + FIXED_OVERHEAD
    return -(-total // MIB) * MIB
