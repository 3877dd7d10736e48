"""gpgcheck: check the GPG simple-signing signatures of one image digest, downloading no layer.

Used by `reconcile verify IMAGE` (apply leaves GPG to skopeo's policy during the fetch).
1. the registry must serve a manifest for exactly that digest (one manifest request);
2. signatures are read from the lookaside store `verification.gpg.lookaside`
   (`<base>/<repository path without host>@sha256=<hex>/signature-N`, N = 1, 2, ... until one
   is missing; file:// is read directly, http(s):// with urllib, both size-bounded);
3. each is verified by gpg in a throw-away keyring holding only the configured keys, decided
   from gpg's status lines (reconciler.tools.gpg), never from its exit code;
4. the signed payload must be a strict "atomic container signature" for that digest whose
   docker-reference satisfies the configured identity rule (reconciler.trust.identity).
One acceptable signature is enough; otherwise the error lists why each one failed.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from reconciler import logs, reference, resolve
from reconciler.config import Desired
from reconciler.errors import ConfigError, ReconcileError, TransientError, VerificationError
from reconciler.retry import with_retries
from reconciler.steps.verify import identity_rule
from reconciler.tools import skopeo
from reconciler.tools.gpg import Keyring
from reconciler.trust import manifest_digest
from reconciler.trust.identity import IdentityRule, check_rule, identity_mismatch
from reconciler.trust.payload import ATOMIC_SIGNATURE_TYPE, PayloadError, parse_payload
from reconciler.trust.sigfiles import MAX_SIGNATURE_BYTES, SIMPLE_SIGNING_PREFIX

log = logs.get_logger(__name__)

MAX_SIGNATURES = 64
HTTP_TIMEOUT_S = 30.0

_Kind = Literal["format", "key", "payload", "digest", "identity"]
_HINTS: dict[_Kind, str] = {
    "format": "the lookaside store holds something that is not a GPG signed message; "
    "re-sign the image (skopeo copy --sign-by FPR ... or skopeo standalone-sign)",
    "key": "sign the image with one of the keys in verification.gpg.keys, or add the "
    "signer's public key there",
    "payload": "the signed data is not a container signature; re-sign the image",
    "digest": "the signature was made for another manifest (the image was changed or "
    "re-pushed after signing); sign the exact digest",
    "identity": "the image was signed under another name; re-sign it under the name it is "
    "pulled by, or fix verification.identity",
}


@dataclass(frozen=True)
class GpgMatch:
    """The signature that was accepted."""

    key: str
    identity: str


class GpgFailure(NamedTuple):
    """Why one signature was not accepted; `kind` selects the hint."""

    kind: _Kind
    reason: str


def signature_url(lookaside: str, ref: reference.ImageRef, digest: str, number: int) -> str:
    """Where signature `number` of `ref`@`digest` lives (containers-registries.d lookaside)."""
    path = ref.repository.split("/", 1)[1]
    return f"{lookaside.rstrip('/')}/{path}@{digest.replace(':', '=')}/signature-{number}"


def _read_file(url: str) -> bytes | None:
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_SIGNATURE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ReconcileError(f"cannot read signature {path}: {err.strerror or err}",
                             hint="check verification.gpg.lookaside and the file's "
                                  "permissions") from err


def _read_http(url: str) -> bytes | None:
    opener = urllib.request.build_opener()
    try:
        with opener.open(url, timeout=HTTP_TIMEOUT_S) as response:
            body: bytes = response.read(MAX_SIGNATURE_BYTES + 1)
            return body
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        if err.code >= 500 or err.code == 429:
            raise TransientError(f"signature store answered {err.code} for {url}",
                                 hint="check the signature server; rerunning is safe") from err
        raise ReconcileError(f"signature store refused {url}: HTTP {err.code}",
                             hint="check verification.gpg.lookaside") from err
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise TransientError(f"signature store {url} could not be reached: {err}",
                             hint="check the network and verification.gpg.lookaside") from err


def read_signatures(lookaside: str, ref: reference.ImageRef, digest: str) -> list[bytes]:
    """The stored signatures of `ref`@`digest`, in order (at most MAX_SIGNATURES)."""
    scheme = urllib.parse.urlparse(lookaside).scheme
    readers: dict[str, Callable[[str], bytes | None]] = {
        "file": _read_file, "http": _read_http, "https": _read_http}
    if scheme not in readers:
        raise ConfigError(f"verification.gpg.lookaside {lookaside!r} is not a file:// or "
                          "http(s):// URL", hint="fix verification.gpg.lookaside")
    blobs = []
    for number in range(1, MAX_SIGNATURES + 1):
        blob = readers[scheme](signature_url(lookaside, ref, digest, number))
        if blob is None:
            break
        blobs.append(blob)
    return blobs


def check_signature(keyring: Keyring, blob: bytes, digest: str,
                    rule: IdentityRule) -> GpgMatch | GpgFailure:
    """Whether one stored signature is acceptable for `digest` under `rule`, and if not why."""
    if blob.startswith(SIMPLE_SIGNING_PREFIX):
        blob = blob[len(SIMPLE_SIGNING_PREFIX):]
    elif blob.startswith(b"\x00"):
        return GpgFailure("format", "not a GPG signature (another signature format)")
    if len(blob) > MAX_SIGNATURE_BYTES:
        return GpgFailure("format", f"larger than {MAX_SIGNATURE_BYTES} bytes")
    verdict = keyring.verify(blob)
    if verdict.signer is None:
        return GpgFailure("key", verdict.reason)
    try:
        claims = parse_payload(verdict.payload, ATOMIC_SIGNATURE_TYPE)
    except PayloadError as err:
        return GpgFailure("payload", f"good signature by {verdict.signer}, but the signed data "
                                   f"is not a container signature: {err}")
    if claims.manifest_digest != digest:
        return GpgFailure("digest", f"signs {claims.manifest_digest}, not {digest}")
    mismatch = identity_mismatch(rule, claims.docker_reference)
    if mismatch is not None:
        return GpgFailure("identity", mismatch)
    return GpgMatch(key=verdict.signer, identity=claims.docker_reference)


def _served_manifest(desired: Desired, ref: reference.ImageRef, digest: str) -> None:
    pinned = f"{ref.repository}@{digest}"
    access = resolve.access_for(desired.registry, ref.registry)
    raw = with_retries(f"fetch manifest {pinned}", lambda: skopeo.inspect_raw(pinned, access),
                       desired.retries)
    if manifest_digest(raw) != digest:
        raise VerificationError(f"the registry served {manifest_digest(raw)} for {pinned}",
                                hint="the registry or a proxy rewrites manifests; do not "
                                     "install from it")


def check(desired: Desired, ref: reference.ImageRef, digest: str) -> dict[str, Any]:
    """Verify the GPG signatures of `ref` at `digest`; raise VerificationError if none pass."""
    trust = desired.trust
    if not trust.gpg_lookaside:
        raise ConfigError(f"verification.gpg.lookaside is not set in {desired.source}",
                          hint="name the signature store (file:// or https:// URL) so that "
                               "'reconcile verify' can read the signatures")
    lookaside = trust.gpg_lookaside
    rule = identity_rule(trust, ref)
    check_rule(rule)
    _served_manifest(desired, ref, digest)
    blobs = with_retries(f"read signatures of {ref.repository}@{digest}",
                         lambda: read_signatures(lookaside, ref, digest), desired.retries)
    if not blobs:
        raise VerificationError(
            f"no GPG signature found for {ref.repository}@{digest} "
            f"(looked for {signature_url(lookaside, ref, digest, 1)})",
            hint="sign the image (skopeo copy --sign-by FPR ...) or fix "
                 "verification.gpg.lookaside")
    failures: list[GpgFailure] = []
    with Keyring(trust.gpg_keys) as keyring:
        for number, blob in enumerate(blobs, start=1):
            result = check_signature(keyring, blob, digest, rule)
            if isinstance(result, GpgMatch):
                log.info("gpg signature verified", image=str(ref), digest=digest,
                         key=result.key, identity=result.identity, signature=number)
                return {"key": result.key, "identity": result.identity, "signature": number}
            log.debug("gpg signature rejected", signature=number, reason=result.reason)
            failures.append(result)
    raise VerificationError(
        f"no acceptable GPG signature for {ref.repository}@{digest}:\n"
        + "\n".join(f"  signature {n}: {f.reason}" for n, f in enumerate(failures, start=1)),
        hint="; or ".join(_HINTS[kind] for kind in dict.fromkeys(f.kind for f in failures)))
