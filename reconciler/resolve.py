"""Resolve the desired image references to digests (one manifest query per tag, none if pinned)."""

from __future__ import annotations

import hashlib

from reconciler.config import Desired, RegistryOptions
from reconciler.reference import ImageRef
from reconciler.retry import with_retries
from reconciler.tools import skopeo


def access_for(options: RegistryOptions, registry: str) -> skopeo.Access:
    """skopeo access settings for `registry`."""
    return skopeo.Access(tls_verify=options.tls_for(registry), cert_dir=options.cert_dir,
                         auth_file=options.auth_file)


def digest_of(ref: ImageRef, desired: Desired) -> str:
    """The manifest digest `ref` names now."""
    if ref.digest:
        return ref.digest
    access = access_for(desired.registry, ref.registry)
    raw = with_retries(f"resolve {ref}", lambda: skopeo.inspect_raw(str(ref), access),
                       desired.retries)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def resolve_all(desired: Desired) -> dict[str, str]:
    """Digest per target."""
    digests = {"system": digest_of(desired.system, desired)}
    if desired.recovery is not None:
        digests["recovery"] = digest_of(desired.recovery, desired)
    return digests
