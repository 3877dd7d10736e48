"""verify: check cosign signatures of the exact digest about to be fetched, from the registry.

Signatures are read from the `sha256-<hex>.sig` tag of the image's repository (cosign's
tag-based discovery); each is checked in Python (reconciler.trust). GPG simple signing is
enforced by skopeo during the fetch instead (policy.json); `reconcile verify` checks it
without a fetch through reconciler.steps.gpgcheck.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from reconciler import logs, reference, resolve
from reconciler.config import Desired, Trust
from reconciler.errors import ImageNotFound, VerificationError
from reconciler.plan import Step
from reconciler.retry import with_retries
from reconciler.steps.context import Context
from reconciler.tools import skopeo
from reconciler.trust import (
    CosignMatch,
    IdentityRule,
    SignatureLayer,
    layers_from_sig_manifest,
    load_public_keys,
    sig_tag,
    verify_cosign,
)

log = logs.get_logger(__name__)


def identity_rule(trust: Trust, ref: reference.ImageRef) -> IdentityRule:
    """The cosign identity rule for the configured identity mode."""
    if trust.identity == "repository":
        return IdentityRule(repository=ref.repository)
    if trust.identity == "exact":
        return IdentityRule(repository=ref.repository,
                            exact=f"{ref.repository}:{ref.tag}" if ref.tag else ref.repository)
    return IdentityRule(repository=ref.repository, exact=trust.identity)


def fetch_signatures(desired: Desired, ref: reference.ImageRef,
                     digest: str) -> list[SignatureLayer]:
    """The layers of the cosign `.sig` manifest stored for `ref` at `digest` (retried when
    transient); VerificationError if there is none."""
    access = resolve.access_for(desired.registry, ref.registry)
    sig_ref = f"{ref.repository}:{sig_tag(digest)}"
    with tempfile.TemporaryDirectory(prefix="cos-reconciler-sig-") as tmp:
        work = Path(tmp)
        policy = work / "policy.json"
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')

        def download() -> None:
            skopeo.copy(f"docker://{sig_ref}", f"dir:{work / 'sig'}", image=sig_ref,
                        access=access, policy=policy)

        try:
            with_retries(f"fetch signatures {sig_ref}", download, desired.retries)
        except ImageNotFound as err:
            raise VerificationError(
                f"no cosign signature found for {ref.repository}@{digest} ({sig_ref} is absent)",
                hint="sign the image with 'cosign sign --key …' or check verification.cosign.keys"
            ) from err
        manifest = (work / "sig" / "manifest.json").read_bytes()

        def read_blob(blob_digest: str) -> bytes:
            return (work / "sig" / blob_digest.split(":", 1)[1]).read_bytes()

        return layers_from_sig_manifest(manifest, read_blob)


def check(desired: Desired, ref: reference.ImageRef, digest: str) -> CosignMatch:
    """Verify the cosign signatures of `ref` at `digest`; raise VerificationError if none pass."""
    keys = load_public_keys(list(desired.trust.cosign_keys))
    layers = fetch_signatures(desired, ref, digest)
    match = verify_cosign(layers, manifest_digest=digest, keys=keys,
                          identity=identity_rule(desired.trust, ref))
    log.info("cosign signature verified", image=str(ref), digest=digest, key=match.key,
             identity=match.identity)
    return match


def verify(ctx: Context, step: Step) -> None:
    """The plan's verify step: refuse to go on unless a configured key signed this digest."""
    check(ctx.desired, reference.parse(step.image), step.digest)


def verify_image(desired: Desired, image: str) -> dict[str, Any]:
    """`reconcile verify IMAGE`: check signatures without installing anything."""
    if not desired.trust.enabled:
        raise VerificationError(f"verification is disabled in {desired.source}",
                                hint="remove verification.policy: insecure-accept-anything")
    ref = reference.parse(image)
    digest = resolve.digest_of(ref, desired)
    result: dict[str, Any] = {"image": str(ref), "digest": digest}
    if desired.trust.cosign_keys:
        match = check(desired, ref, digest)
        result["cosign"] = {"key": match.key, "identity": match.identity, "digest": match.digest}
    if desired.trust.gpg_keys:
        from reconciler.steps import gpgcheck  # noqa: PLC0415 - gpgcheck imports this module

        result["gpg"] = gpgcheck.check(desired, ref, digest)
    return result
