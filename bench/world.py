"""The benchmark's sandbox: a registry on loopback, a signing key, image pairs, fresh disks.

Everything lives under one work directory and is torn down by `World.close` (a context
manager), also after a failure or Ctrl-C: disks (their loops and every mount hanging off them),
the registry process, the gpg agent, then the directory itself.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from bench.images import Pair, build_pair
from reconciler import sizing
from reconciler.sandbox import gpg
from reconciler.sandbox.disk import SandboxDisk, fake_host_root
from reconciler.sandbox.images import ImageFactory
from reconciler.sandbox.registry import Registry
from reconciler.unpack import Layer

MIB = 1 << 20
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


class World:
    """Registry, key, images and disks for one harness run."""

    def __init__(self, parent: Path | None = None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="cos-reconciler-bench-",
                                             dir=parent or "/var/tmp"))
        self._stack = contextlib.ExitStack()
        self.key: gpg.GpgKey | None = None
        self.registry: Registry | None = None
        self.factory: ImageFactory | None = None
        self.pairs: dict[int, Pair] = {}
        self._disks = 0

    def __enter__(self) -> World:
        try:
            self._stack.callback(shutil.rmtree, self.workdir, ignore_errors=True)
            self.key = gpg.make_key(self.workdir / "gpg", name="cos-reconciler bench")
            self._stack.callback(gpg.stop_agent, self.key)
            self.registry = self._stack.enter_context(Registry(self.workdir / "registry"))
            self.factory = ImageFactory(self.workdir / "images", self.registry.host)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    # -- images ---------------------------------------------------------------------------

    def build(self, size_mb: int, *, files: int | None = None) -> Pair:
        assert self.factory is not None and self.key is not None
        pair = build_pair(self.factory, self.key, size_mb, files=files)
        gpg.stop_agent(self.key)
        self.pairs[size_mb] = pair
        return pair

    def reg(self) -> Registry:
        assert self.registry is not None
        return self.registry

    # -- disks ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def disk(self, pair: Pair) -> Iterator[SandboxDisk]:
        """A fresh cOS disk big enough for three images of `pair` and its layer cache."""
        self._disks += 1
        workdir = self.workdir / f"disk{self._disks}"
        image = image_bytes(pair) // MIB
        unpacked = pair.v2.unpacked_bytes // MIB
        state = 3 * image + unpacked + 256      # active + passive + transition (+ elemental)
        persistent = 2 * unpacked + 256         # layer cache + an unpacked tree
        try:
            with SandboxDisk(workdir, state_mib=state, persistent_mib=persistent) as disk:
                yield disk
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def host_root(self, name: str) -> Path:
        return fake_host_root(self.workdir / "hosts" / name, mode="active")

    def write_config(self, path: Path, image: str) -> None:
        """The desired-state file reconcile reads: GPG verification on, plain-HTTP registry."""
        assert self.key is not None and self.factory is not None
        doc = {
            "reconciler_format": 1,
            "system": {"image": image},
            "verification": {"gpg": {"keys": [str(self.key.public_key)],
                                     "lookaside": f"file://{self.factory.sigstore}"}},
            "registry": {"insecure": [self.reg().host]},
            "retries": {"attempts": 2, "initial_wait_s": 0, "max_wait_s": 0},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))


def image_bytes(pair: Pair, *, tag: str = "v2") -> int:
    """The size reconcile gives the new image file for `pair`'s `tag` (its own estimate)."""
    image = pair.v2 if tag == "v2" else pair.v1
    layers = [Layer(image.blob(d), LAYER_TYPE, d) for d in image.layers]
    return sizing.image_size(layers)
