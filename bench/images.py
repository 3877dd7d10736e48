"""Benchmark OS images: a v1/v2 pair of a given unpacked size, pushed and signed.

Why not `ImageFactory.build_pair` as is: its v2 layer is a few hundred bytes (so a warm
upgrade would be measured against the size of the config blob) and its filler is incompressible
(so decompression would cost nothing). These images reuse the sandbox's awkward base entries
(setuid/setgid, capabilities, devices, fifo, hardlinks, symlinks, xattrs) and add:

- v1 = base (75 % of the bytes) + middleware (20 %) + app (5 %, with os-release): 3 layers;
- v2 = v1's three blobs byte for byte + one top layer that rewrites ~5 % of the bytes (updated
  files), with the sandbox's whiteout and opaque-directory changes;
- ~34 regular files per MB (10,200 at 300 MB), sizes spread log-normally, text-like content
  that gzip shrinks about 2x, plus a hardlink every 97 files, a symlink every 53 and a user
  xattr every 71.

v1 has no whiteouts, so GNU tar extracting its layers in order gives exactly the tree an OCI
runtime would; the harness uses that as the oracle for the installed tree.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reconciler.sandbox import content
from reconciler.sandbox.gpg import GpgKey
from reconciler.sandbox.images import BuiltImage, ImageFactory
from reconciler.sandbox.oci import Layer, OciLayout

MB = 1_000_000
FILES_PER_MB = 34
MIN_FILES = 200
_SHARES = (("base", 0.75), ("middleware", 0.20), ("app", 0.05))
UPDATE_SHARE = 0.05
_CORPUS_BYTES = 8 << 20
_RANDOM_SHARE = 0.3  # of each file; the rest is word soup (gzip ~3x): ~2x overall
_PER_DIR = 64


@dataclass(frozen=True)
class BenchImage:
    """One pushed image and what the harness needs to know about it."""

    tag: str
    reference: str
    repository: str
    digest: str
    layers: tuple[str, ...]
    layer_sizes: tuple[int, ...]
    layout: Path
    files: int
    entries: int
    unpacked_bytes: int

    @property
    def by_digest(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def compressed_bytes(self) -> int:
        return sum(self.layer_sizes)

    def blob(self, digest: str) -> Path:
        """The layer blob `digest` in the local OCI layout."""
        return self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


@dataclass(frozen=True)
class Pair:
    """v1 and v2 of one benchmark size."""

    size_mb: int
    v1: BenchImage
    v2: BenchImage

    @property
    def new_layer_bytes(self) -> int:
        return self.v2.layer_sizes[-1]


@dataclass
class _Counts:
    files: int = 0
    entries: int = 0
    data: int = 0


class _Content:
    """Deterministic file contents: slices of a word-soup corpus mixed with random bytes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        words = [bytes(self.rng.choices(b"abcdefghijklmnopqrstuvwxyz_", k=self.rng.randint(3, 10)))
                 for _ in range(4096)]
        parts: list[bytes] = []
        total = 0
        while total < _CORPUS_BYTES:
            line = b" ".join(self.rng.choices(words, k=12)) + b"\n"
            parts.append(line)
            total += len(line)
        self.corpus = b"".join(parts)

    def chunk(self, size: int) -> bytes:
        rnd = int(size * _RANDOM_SHARE)
        text = size - rnd
        start = self.rng.randrange(0, len(self.corpus) - min(text, len(self.corpus) - 1))
        soup = self.corpus[start:start + text]
        while len(soup) < text:  # only for files larger than the corpus
            soup += self.corpus[:text - len(soup)]
        return self.rng.randbytes(rnd) + soup


def _sizes(rng: random.Random, count: int, total: int) -> list[int]:
    """`count` log-normally spread sizes (many small files, a few big ones) summing to `total`."""
    raw = [rng.lognormvariate(0.0, 1.6) for _ in range(count)]
    scale = total / sum(raw)
    sizes = [max(1, int(r * scale)) for r in raw]
    sizes[-1] += total - sum(sizes)
    sizes[-1] = max(sizes[-1], 1)
    return sizes


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    with open(path, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def _filler(root: Path, prefix: str, *, count: int, total: int, gen: _Content) -> tuple[
        _Counts, list[tuple[str, int]]]:
    """`count` regular files of about `total` bytes under `root/prefix`, with links and xattrs.

    Returns the counts and the (relative path, size) of every regular file written.
    """
    counts = _Counts()
    written: list[tuple[str, int]] = []
    previous: Path | None = None
    for i, size in enumerate(_sizes(gen.rng, count, total)):
        rel_dir = f"{prefix}/pkg{i // (_PER_DIR * 16):03d}/{(i // _PER_DIR) % 16:02d}"
        directory = root / rel_dir
        if not directory.is_dir():
            directory.mkdir(parents=True)
            counts.entries += 1
        rel = f"{rel_dir}/f{i:06d}.bin"
        path = root / rel
        _write(path, gen.chunk(size), 0o755 if i % 7 == 0 else 0o644)
        written.append((rel, size))
        counts.files += 1
        counts.entries += 1
        counts.data += size
        if i % 71 == 0:
            os.setxattr(path, "user.bench.origin", prefix.encode())
        if i % 97 == 96 and previous is not None:
            os.link(previous, directory / f"f{i:06d}.hardlink")
            counts.entries += 1
        if i % 53 == 52 and previous is not None:
            os.symlink(os.path.relpath(previous, directory), directory / f"f{i:06d}.link")
            counts.entries += 1
        previous = path
    return counts, written


def build_pair(factory: ImageFactory, key: GpgKey, size_mb: int, *,
               files: int | None = None) -> Pair:
    """Build, push and sign `bench/os-<size>m:v1` and `:v2` of about `size_mb` MB unpacked."""
    total = size_mb * MB
    count = files if files is not None else max(MIN_FILES, size_mb * FILES_PER_MB)
    repo = f"bench/os-{size_mb}m"
    repository = f"{factory.host}/{repo}"
    home = Path(tempfile.mkdtemp(prefix=f"os-{size_mb}m-", dir=factory.workdir))
    layout = OciLayout(home / "oci")
    gen = _Content(seed=size_mb)
    stage = home / "stage"
    layers: list[Layer] = []
    counts = _Counts()
    try:
        base_files: list[tuple[str, int]] = []
        for name, share in _SHARES:
            root = content.new_root(stage / name)
            if name == "base":
                content.base(root)
            elif name == "app":
                content.app(root, repository)
            n = max(1, math.floor(count * share))
            got, written = _filler(root, f"usr/lib/{name}", count=n, total=int(total * share),
                                   gen=gen)
            if name == "base":
                base_files = written
            counts.files += got.files
            counts.entries += got.entries
            counts.data += got.data
            content.set_mtimes(root)
            layers.append(layout.add_layer(root, f"bench {name} layer"))
            shutil.rmtree(root)
        top = content.new_root(stage / "top")
        content.top_staging(top, repository)
        _update(top, base_files, int(total * UPDATE_SHARE), gen)
        content.set_mtimes(top)
        top_layer = layout.add_layer(top, "bench v2 update")
        shutil.rmtree(top)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    images = []
    for tag, image_layers in (("v1", layers), ("v2", [*layers, top_layer])):
        labels = {"org.opencontainers.image.title": repo, "org.opencontainers.image.version": tag}
        manifest = layout.add_image(tag, image_layers, labels=labels)
        built = BuiltImage(
            reference=f"{repository}:{tag}", repository=repository, tag=tag,
            digest=manifest.digest, tree=home, layers=tuple(x.digest for x in image_layers),
            layer_sizes=tuple(x.size for x in image_layers), layout=layout.path,
            diff_ids=tuple(x.diff_id for x in image_layers), config=manifest.config)
        pushed = factory.push(built, key=key)
        images.append(BenchImage(
            tag=tag, reference=pushed.reference, repository=pushed.repository,
            digest=pushed.digest, layers=pushed.layers, layer_sizes=pushed.layer_sizes,
            layout=layout.path, files=counts.files, entries=counts.entries,
            unpacked_bytes=counts.data))
    return Pair(size_mb, images[0], images[1])


def _update(root: Path, candidates: list[tuple[str, int]], budget: int, gen: _Content) -> None:
    """Rewrite base files (new content, same path and size) until `budget` bytes are used."""
    order = list(range(len(candidates)))
    gen.rng.shuffle(order)
    used = 0
    for index in order:
        rel, size = candidates[index]
        if used + size > budget and used > 0:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, gen.chunk(size))
        used += size
        if used >= budget:
            break
