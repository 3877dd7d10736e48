"""Image references: parsing, normalisation, digests and refused forms."""

from __future__ import annotations

import pytest

from reconciler.reference import ReferenceError, parse

DIGEST = "sha256:" + "ab" * 32


def test_registry_with_port_and_tag() -> None:
    """host:port/repo:tag splits into repository and tag."""
    ref = parse("127.0.0.1:5000/cos/system:v1")
    assert (ref.repository, ref.tag, ref.digest, ref.registry) == (
        "127.0.0.1:5000/cos/system", "v1", None, "127.0.0.1:5000")


def test_short_names_normalise_like_docker() -> None:
    """A bare name means docker.io/library/NAME:latest."""
    assert str(parse("alpine")) == "docker.io/library/alpine:latest"


def test_digest_pinning_and_by_digest() -> None:
    """A pinned reference fetches by repository@digest."""
    ref = parse(f"quay.io/cos/system@{DIGEST}")
    assert ref.by_digest() == f"quay.io/cos/system@{DIGEST}"
    assert parse("quay.io/cos/system:v2").pinned(DIGEST).by_digest() == ref.by_digest()


@pytest.mark.parametrize("text", ["", "UPPER/case:1", "quay.io/x@sha256:short",
                                  "https://quay.io/x:1", "user:pw@quay.io/x:1", "a b"])
def test_invalid_references_are_refused(text: str) -> None:
    """Malformed references raise ReferenceError with a reason."""
    with pytest.raises(ReferenceError):
        parse(text)
