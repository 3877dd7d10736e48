"""Every row of the cosign results table in shared/vectors/README.md, run through our verifier.

The fixtures are upstream containers/image test data (signatures we did not make). They are
looked up in $COS_VECTORS, else in `<checkout>/../shared/vectors`; missing -> visible skip.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.errors import VerificationError
from reconciler.trust.cosign import (
    CosignMatch,
    IdentityRule,
    load_public_keys,
    manifest_digest,
    verify_cosign,
)
from reconciler.trust.sigfiles import parse_signature_blob, read_dir_signatures, verify_dir_image

VECTORS = Path(os.environ.get("COS_VECTORS") or Path(__file__).resolve().parents[2] / "shared"
               / "vectors")
SAMPLE = "192.168.64.2:5000/cosign-signed-single-sample"
SKOPEO = "192.168.64.2:5000/skopeo-signed"
REKOR_REPO = "192.168.64.2:5000/cosign-signed/key-1"
VALID_DIGEST = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
REKOR_DIGEST = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a"

# Reason class -> text the VerificationError message must contain.
REASONS = {
    "key": "no configured key verifies it",
    "digest": f"signs {VALID_DIGEST}, not sha256:",
    "identity": "does not match",
    "no-manifest": "manifest missing",
    "no-signature": "no cosign signature found",
}


@dataclass(frozen=True)
class Case:
    fixture: str
    identity: IdentityRule
    keys: tuple[str, ...] = ("cosign.pub",)
    expect: str = "accept"  # or a key of REASONS

    def __str__(self) -> str:
        mode = f"exact={self.identity.exact}" if self.identity.exact else self.identity.repository
        return f"{self.fixture}|{'+'.join(self.keys)}|{mode}|{self.expect}"


def repo(name: str) -> IdentityRule:
    return IdentityRule(repository=name)


def exact(ref: str) -> IdentityRule:
    return IdentityRule(repository=ref.rsplit(":", 1)[0], exact=ref)


CASES = [
    # dir-img-cosign-valid
    Case("dir-img-cosign-valid", repo(SAMPLE)),
    Case("dir-img-cosign-valid", repo("testing/manifest"), expect="identity"),
    Case("dir-img-cosign-valid", repo("this/does-not"), expect="identity"),
    Case("dir-img-cosign-valid", exact("testing/manifest:notlatest"), expect="identity"),
    Case("dir-img-cosign-valid", exact("this/does-not:match"), expect="identity"),
    Case("dir-img-cosign-valid", exact(f"{SAMPLE}:latest"), expect="identity"),
    Case("dir-img-cosign-valid", IdentityRule(SAMPLE, exact=SAMPLE), expect="identity"),
    Case("dir-img-cosign-valid", repo(SAMPLE), keys=("cosign2.pub",), expect="key"),
    # dir-img-cosign-valid-2
    Case("dir-img-cosign-valid-2", repo(SAMPLE)),
    Case("dir-img-cosign-valid-2", repo("this/does-not"), expect="identity"),
    # dir-img-cosign-mixed: signature-1 by an unknown key, signature-2 valid
    Case("dir-img-cosign-mixed", repo(SAMPLE)),
    # dir-img-cosign-valid-with-tag: signed "repo:tag" by containers/image's own signer
    Case("dir-img-cosign-valid-with-tag", exact(f"{SKOPEO}:tag")),
    Case("dir-img-cosign-valid-with-tag", repo(SKOPEO)),
    Case("dir-img-cosign-valid-with-tag", exact(f"{SKOPEO}:othertag"), expect="identity"),
    # dir-img-cosign-key-rekor-valid: signed with cosign2.pub (Rekor bundle not checked by us)
    Case("dir-img-cosign-key-rekor-valid", repo(REKOR_REPO), keys=("cosign2.pub",)),
    Case("dir-img-cosign-key-rekor-valid", repo(REKOR_REPO), keys=("cosign2.pub", "rekor.pub")),
    Case("dir-img-cosign-key-rekor-valid", repo(REKOR_REPO), keys=("cosign.pub", "cosign2.pub")),
    Case("dir-img-cosign-key-rekor-valid", repo(REKOR_REPO), expect="key"),
    # rejects
    Case("dir-img-cosign-modified-manifest", repo(SAMPLE), expect="digest"),
    Case("dir-img-cosign-no-manifest", repo(SAMPLE), expect="no-manifest"),
    Case("dir-img-cosign-manifest-digest-error", repo(SAMPLE), expect="digest"),
    Case("dir-img-cosign-other-attachment", repo("testing/manifest"), expect="no-signature"),
]


@pytest.fixture
def vectors() -> Path:
    cosign = VECTORS / "cosign"
    if not (cosign / "cosign.pub").is_file():
        pytest.skip(f"cosign signature vectors not found at {cosign} (set COS_VECTORS)")
    return cosign


@pytest.mark.parametrize("case", CASES, ids=str)
def test_vector(vectors: Path, case: Case) -> None:
    """Each README cosign row gets the README's accept/reject result and reason class."""
    keys = load_public_keys([vectors / name for name in case.keys])
    directory = vectors / case.fixture
    if case.expect == "accept":
        match = verify_dir_image(directory, keys, case.identity)
        assert match.digest == manifest_digest((directory / "manifest.json").read_bytes())
        assert match.key in {str(vectors / name) for name in case.keys}
        return
    with pytest.raises(VerificationError) as caught:
        verify_dir_image(directory, keys, case.identity)
    assert REASONS[case.expect] in caught.value.message
    assert caught.value.hint


def test_unknown_key_signature(vectors: Path) -> None:
    """unknown-cosign-key.signature: valid payload, but cosign.pub does not verify it."""
    layer = parse_signature_blob((vectors / "unknown-cosign-key.signature").read_bytes())
    assert layer is not None
    with pytest.raises(VerificationError, match="signature 1: no configured key verifies it"):
        verify_cosign([layer], manifest_digest=VALID_DIGEST,
                      keys=load_public_keys([vectors / "cosign.pub"]), identity=repo(SAMPLE))


def test_vector_digests_match_readme(vectors: Path) -> None:
    """manifest_digest of the fixture manifests equals the digests the README and payloads name."""
    assert manifest_digest((vectors / "dir-img-cosign-valid/manifest.json").read_bytes()) \
        == VALID_DIGEST
    assert manifest_digest((vectors / "dir-img-cosign-key-rekor-valid/manifest.json")
                           .read_bytes()) == REKOR_DIGEST


def test_each_valid_2_signature_verifies_alone(vectors: Path) -> None:
    """Both signatures of dir-img-cosign-valid-2 are independently acceptable."""
    keys = load_public_keys([vectors / "cosign.pub"])
    layers = read_dir_signatures(vectors / "dir-img-cosign-valid-2")
    assert len(layers) == 2
    for layer in layers:
        match = verify_cosign([layer], manifest_digest=VALID_DIGEST, keys=keys,
                              identity=repo(SAMPLE))
        assert match == CosignMatch(key=str(vectors / "cosign.pub"), identity=SAMPLE,
                                    digest=VALID_DIGEST)


def test_mixed_failure_lists_every_signature(vectors: Path) -> None:
    """With the wrong repository, dir-img-cosign-mixed reports a reason for each signature."""
    with pytest.raises(VerificationError) as caught:
        verify_dir_image(vectors / "dir-img-cosign-mixed",
                         load_public_keys([vectors / "cosign.pub"]), repo("other/repo"))
    message = caught.value.message
    assert "signature 1: no configured key verifies it" in message
    assert f"signature 2: identity {SAMPLE} does not match repository other/repo" in message


def test_fixtures_match_sha256sums(vectors: Path) -> None:
    """The cosign fixtures are byte-identical to what SHA256SUMS recorded when they were copied."""
    sums = (vectors.parent / "SHA256SUMS").read_text().splitlines()
    rows = [line.split(maxsplit=1) for line in sums if line.split(maxsplit=1)[1].startswith(
        "cosign/")]
    assert rows
    for expected, name in rows:
        assert hashlib.sha256((vectors.parent / name).read_bytes()).hexdigest() == expected, name
