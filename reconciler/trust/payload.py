"""Parse a cosign simple-signing payload, strictly, after its signature has been verified.

Format (sigstore/cosign SIGNATURE_SPEC.md; rules of containers/image `sigstore_payload.go`):
{"critical": {"identity": {"docker-reference": R}, "image": {"docker-manifest-digest": D},
"type": "cosign container image signature"}, "optional": null | {...}}.
`critical`, `critical.image` and `critical.identity` must have exactly these members; the top
level exactly `critical` and `optional`; duplicate keys are rejected anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.trust._json import StrictJSONError, exact_object, loads, string_member

SIGNATURE_TYPE = "cosign container image signature"
ATOMIC_SIGNATURE_TYPE = "atomic container signature"  # GPG simple signing (same layout)


class PayloadError(ValueError):
    """The payload is not a well-formed cosign container image signature."""


@dataclass(frozen=True)
class SignedClaims:
    """What a verified payload asserts."""

    manifest_digest: str
    docker_reference: str
    creator: str | None = None
    timestamp: int | None = None


def _optional(value: Any) -> tuple[str | None, int | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise PayloadError("optional is neither null nor an object")
    creator = value.get("creator")
    if creator is not None and not isinstance(creator, str):
        raise PayloadError("optional.creator is not a string")
    timestamp = value.get("timestamp")
    if timestamp is None:
        return creator, None
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise PayloadError("optional.timestamp is not a number")
    if isinstance(timestamp, float) and not timestamp.is_integer():
        raise PayloadError("optional.timestamp is not an integer")
    return creator, int(timestamp)


def parse_payload(payload: bytes, signature_type: str = SIGNATURE_TYPE) -> SignedClaims:
    """The claims in `payload` (whose critical.type must be `signature_type`), or PayloadError
    saying what is malformed."""
    try:
        top = exact_object(loads(payload), ("critical", "optional"), "payload")
        critical = exact_object(top["critical"], ("type", "image", "identity"), "critical")
        kind = string_member(critical, "type", "critical")
        if kind != signature_type:
            raise PayloadError(f"critical.type is {kind!r}, not {signature_type!r}")
        image = exact_object(critical["image"], ("docker-manifest-digest",), "critical.image")
        identity = exact_object(critical["identity"], ("docker-reference",), "critical.identity")
        digest = string_member(image, "docker-manifest-digest", "critical.image")
        reference = string_member(identity, "docker-reference", "critical.identity")
    except StrictJSONError as err:
        raise PayloadError(str(err)) from err
    creator, timestamp = _optional(top["optional"])
    return SignedClaims(digest, reference, creator, timestamp)
