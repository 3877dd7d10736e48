"""Docker reference parsing and identity matching (host:port, tags, digests, normalisation)."""

from __future__ import annotations

import pytest

from reconciler.trust.identity import IdentityRule, identity_mismatch
from reconciler.trust.reference import DockerReference, parse_reference

HEX = "0" * 64


@pytest.mark.parametrize(("text", "expected"), [
    ("192.168.64.2:5000/cosign-signed-single-sample",
     DockerReference("192.168.64.2:5000/cosign-signed-single-sample")),
    ("192.168.64.2:5000/skopeo-signed:tag",
     DockerReference("192.168.64.2:5000/skopeo-signed", "tag")),
    ("localhost:5000/a/b:v1@sha256:" + HEX,
     DockerReference("localhost:5000/a/b", "v1", "sha256:" + HEX)),
    ("localhost/a", DockerReference("localhost/a")),
    ("localhost:5000", DockerReference("docker.io/library/localhost", "5000")),
    ("busybox", DockerReference("docker.io/library/busybox")),
    ("index.docker.io/library/busybox:1", DockerReference("docker.io/library/busybox", "1")),
    ("testing/manifest:latest", DockerReference("docker.io/testing/manifest", "latest")),
    ("[::1]:5000/repo", DockerReference("[::1]:5000/repo")),
])
def test_parse_reference(text: str, expected: DockerReference) -> None:
    """References split host:port, path, tag and digest correctly and are normalised."""
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", ["UPPERCASEISINVALID", "repo:", "repo@sha256:short", "",
                                  "a//b", "host:port/repo", HEX, "repo:tag:tag"])
def test_invalid_reference(text: str) -> None:
    """Malformed references (uppercase, empty tag, short digest, image IDs) raise ValueError."""
    with pytest.raises(ValueError):
        parse_reference(text)


def test_str_round_trips() -> None:
    """str() of a parsed reference is its normalised form."""
    assert str(parse_reference("h:1/r:t@sha256:" + HEX)) == "h:1/r:t@sha256:" + HEX


@pytest.mark.parametrize(("signed", "ok"), [
    ("h.example:5000/r", True),
    ("h.example:5000/r:tag", True),
    ("h.example:5000/r@sha256:" + HEX, True),
    ("h.example:5000/r/sub", False),
    ("h.example:5001/r", False),
    ("h.example/r", False),
    ("h.example:5000/r2", False),
])
def test_repository_mode(signed: str, ok: bool) -> None:
    """Repository mode compares the repository part only, port included."""
    assert (identity_mismatch(IdentityRule("h.example:5000/r"), signed) is None) is ok


def test_repository_mode_normalises_docker_hub() -> None:
    """"busybox" and "docker.io/library/busybox:1" name the same repository."""
    assert identity_mismatch(IdentityRule("busybox"), "docker.io/library/busybox:1") is None


def test_invalid_signed_identity_is_reported() -> None:
    """A signed identity that is not a reference yields a reason, not an exception."""
    reason = identity_mismatch(IdentityRule("testing/manifest"), "UPPERCASEISINVALID")
    assert reason is not None and "not a valid image reference" in reason
