"""Write OCI image layouts by hand: deterministic tar+gzip layers, config, manifest, index."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.sandbox.content import EPOCH
from reconciler.tools._run import run

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "2023-11-14T22:13:20Z"  # EPOCH as RFC 3339

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class Layer:
    """One stored layer blob: compressed digest and size, uncompressed digest (diff_id)."""

    digest: str
    size: int
    diff_id: str
    comment: str


@dataclass(frozen=True)
class Manifest:
    """A stored image manifest: its digest and size, and its config blob's digest."""

    digest: str
    size: int
    config: str


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


class OciLayout:
    """An OCI image layout directory; images are added by tag and share one blob store."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.blobs = self.path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._manifests: dict[str, dict[str, Any]] = {}
        self._write_index()

    def blob_path(self, digest: str) -> Path:
        """Where the blob `sha256:...` is stored."""
        return self.blobs / digest.removeprefix("sha256:")

    def add_blob(self, data: bytes) -> tuple[str, int]:
        """Store `data`; return its digest and size."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blob_path(digest).write_bytes(data)
        return digest, len(data)

    def add_layer(self, tree: Path, comment: str) -> Layer:
        """Store `tree` as a reproducible gzip'ed tar layer (numeric owners, xattrs, EPOCH)."""
        with tempfile.TemporaryDirectory(dir=self.path, prefix="layer-") as scratch:
            tar_path = Path(scratch) / "layer.tar"
            run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--sort=name",
                 f"--mtime=@{EPOCH}", "--format=posix",
                 "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                 "-C", str(tree), "-cf", str(tar_path), "."])
            diff_id = _sha256_file(tar_path)
            gz_path = Path(scratch) / "layer.tar.gz"
            with open(gz_path, "wb") as out:
                run(["pigz", "-n", "-c", str(tar_path)], stdout=out)
            digest = _sha256_file(gz_path)
            size = gz_path.stat().st_size
            os.replace(gz_path, self.blob_path(digest))
        return Layer(digest=digest, size=size, diff_id=diff_id, comment=comment)

    def add_image(self, tag: str, layers: Sequence[Layer], *,
                  labels: Mapping[str, str] | None = None) -> Manifest:
        """Write config and manifest for `layers` and tag the manifest in index.json."""
        config = {
            "created": CREATED,
            "architecture": _ARCH.get(platform.machine(), platform.machine()),
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/sh"],
                "Labels": dict(labels or {}),
            },
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": CREATED, "created_by": layer.comment} for layer in layers],
        }
        config_digest, config_size = self.add_blob(_canonical(config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size}
                       for layer in layers],
        }
        digest, size = self.add_blob(_canonical(manifest))
        self._manifests[tag] = {"mediaType": MANIFEST_TYPE, "digest": digest, "size": size,
                                "annotations": {REF_NAME: tag}}
        self._write_index()
        return Manifest(digest=digest, size=size, config=config_digest)

    def _write_index(self) -> None:
        index = {"schemaVersion": 2, "mediaType": INDEX_TYPE,
                 "manifests": [self._manifests[tag] for tag in sorted(self._manifests)]}
        (self.path / "index.json").write_bytes(_canonical(index))
