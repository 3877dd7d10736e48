"""The persistent OCI image layout that holds fetched images, so shared layers download once."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import HostileImageError
from reconciler.unpack import Layer

REF_ANNOTATION = "org.opencontainers.image.ref.name"
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")


def ref_name(digest: str) -> str:
    """The layout's reference name for an image fetched by `digest`."""
    return digest.replace(":", "-")


@dataclass(frozen=True)
class LayoutCache:
    """An OCI layout directory; images are stored under the name of their registry digest."""

    root: Path

    def skopeo_ref(self, digest: str) -> str:
        return f"oci:{self.root}:{ref_name(digest)}"

    def _index(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / "index.json").read_text())
            return data
        except (OSError, ValueError):
            return {"schemaVersion": 2, "manifests": []}

    def _blob(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.root / "blobs" / algo / hexpart

    def manifest(self, digest: str) -> dict[str, Any] | None:
        """The stored manifest for the image fetched by `digest`, or None."""
        for desc in self._index().get("manifests", []):
            if desc.get("annotations", {}).get(REF_ANNOTATION) == ref_name(digest):
                try:
                    data: dict[str, Any] = json.loads(self._blob(desc["digest"]).read_bytes())
                    return data
                except (OSError, ValueError, KeyError):
                    return None
        return None

    def complete(self, digest: str) -> bool:
        """Whether the image and every layer blob are in the cache."""
        manifest = self.manifest(digest)
        if manifest is None:
            return False
        return all(self._blob(layer["digest"]).is_file() for layer in manifest.get("layers", []))

    def layers(self, digest: str) -> list[Layer]:
        """The image's layers, bottom first, as blob files."""
        manifest = self.manifest(digest)
        if manifest is None:
            raise HostileImageError(f"image {digest} is not in the layout cache {self.root}",
                                    hint="run reconcile again to fetch it")
        return [Layer(self._blob(layer["digest"]), layer["mediaType"], layer["digest"])
                for layer in manifest.get("layers", [])]

    def prune(self, keep: set[str]) -> int:
        """Forget images not in `keep` (registry digests) and delete unreferenced blobs."""
        index = self._index()
        kept = [d for d in index.get("manifests", [])
                if d.get("annotations", {}).get(REF_ANNOTATION) in {ref_name(k) for k in keep}]
        if len(kept) == len(index.get("manifests", [])):
            return 0
        index["manifests"] = kept
        tmp = self.root / "index.json.tmp"
        tmp.write_text(json.dumps(index))
        os.replace(tmp, self.root / "index.json")
        live: set[str] = set()
        for desc in kept:
            live.add(desc["digest"])
            try:
                manifest = json.loads(self._blob(desc["digest"]).read_bytes())
            except (OSError, ValueError):
                continue
            live.add(manifest.get("config", {}).get("digest", ""))
            live.update(layer["digest"] for layer in manifest.get("layers", []))
        removed = 0
        blobs = self.root / "blobs" / "sha256"
        if blobs.is_dir():
            for blob in blobs.iterdir():
                if f"sha256:{blob.name}" not in live:
                    blob.unlink()
                    removed += 1
        return removed
