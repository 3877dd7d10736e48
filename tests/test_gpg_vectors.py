"""Every row of the GPG results table in shared/vectors/README.md, through the project's code.

`dir-img-*` fixtures go through real skopeo under the policy `reconciler.policy.write_policy`
generates (transport "dir"); the loose `*.signature` files go through the status-line verifier
of `reconcile verify` (reconciler.steps.gpgcheck). The fixtures are upstream containers/image
test data; looked up in $COS_VECTORS, else `<checkout>/../shared/vectors`; missing -> skip.

A fixture's layer blobs are not part of the vectors, so skopeo cannot finish copying even an
accepted image: skopeo checks the policy before it reads any blob, so "accepted" means it got
past the policy and then stopped at the first missing blob.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler import config, policy, reference
from reconciler.errors import ReconcileError, VerificationError
from reconciler.steps.gpgcheck import GpgFailure, GpgMatch, check_signature
from reconciler.tools import skopeo
from reconciler.tools._run import run
from reconciler.tools.gpg import Keyring
from reconciler.trust import IdentityRule, manifest_digest

VECTORS = Path(os.environ.get("COS_VECTORS") or Path(__file__).resolve().parents[2] / "shared"
               / "vectors")
GPG = VECTORS / "gpg"
DIGEST = "sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55"
KEY = "08CD26E446E2E95249B7A405E932F44B23E8DD43"
KEY_2 = "F2B501009F78B0B340221A12A3CD242DA6028093"
SUBKEY_PRIMARY = "B9F4CDB9FD8C475BFA340AC38D54A947EE396F36"
LATEST = "testing/manifest:latest"

if not (GPG / "public-key.gpg").is_file():
    pytest.skip(f"GPG signature vectors not found at {GPG} (set COS_VECTORS)",
                allow_module_level=True)


# -- dir-img-* through skopeo and the generated policy ------------------------------------

def skopeo_version() -> tuple[int, ...]:
    """The installed skopeo's version, e.g. (1, 9, 3)."""
    words = run(["skopeo", "--version"]).text.split()
    version = next((w for w in words if w[:1].isdigit()), "0")
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass(frozen=True)
class DirCase:
    fixture: str
    accept: bool
    keys: tuple[str, ...] = ("public-key.gpg",)
    identity: str = "exact"
    claimed: str = LATEST

    def __str__(self) -> str:
        verdict = "accept" if self.accept else "reject"
        return f"{self.fixture}|{'+'.join(self.keys)}|{self.identity}|{self.claimed}|{verdict}"


DIR_CASES = [
    DirCase("dir-img-valid", True),
    DirCase("dir-img-valid", True, identity="repository"),
    DirCase("dir-img-valid", True, keys=("public-key-2.gpg", "public-key-1.gpg")),
    DirCase("dir-img-valid", False, claimed="testing/manifest:notlatest"),
    DirCase("dir-img-valid", False, identity="this/does-not:match"),
    DirCase("dir-img-valid", False, identity="repository", claimed="testing/other:latest"),
    DirCase("dir-img-valid", False, keys=("public-key-2.gpg",)),
    DirCase("dir-img-valid-2", True),
    DirCase("dir-img-mixed", True),
    pytest.param(DirCase("dir-img-valid-subkey", True, keys=("public-key-with-subkey.gpg",)),
                 marks=pytest.mark.xfail(
                     condition=skopeo_version() < (1, 20), strict=True,
                     reason="skopeo before containers/image PR #2905 (2025, 'Accept subkey "
                            "signatures') refuses signatures made by a signing subkey; "
                            "Debian 12 ships skopeo 1.9.3, which fails closed here")),
    DirCase("dir-img-modified-manifest", False),
    DirCase("dir-img-no-manifest", False),
    DirCase("dir-img-manifest-digest-error", False),
    DirCase("dir-img-unsigned", False),
]


def skopeo_outcome(case: DirCase, tmp_path: Path) -> tuple[bool, ReconcileError | None]:
    """(got past the policy, the error) for copying the fixture dir: -> dir: under our policy."""
    trust = config.Trust(gpg_keys=tuple(GPG / k for k in case.keys), identity=case.identity)
    image = reference.parse(case.claimed)
    policy_path, _ = policy.write_policy(tmp_path / "trust", trust, image, transport="dir")
    try:
        skopeo.copy(f"dir:{GPG / case.fixture}", f"dir:{tmp_path / 'copy'}",
                    image=case.claimed, access=skopeo.Access(), policy=policy_path,
                    timeout=120)
    except ReconcileError as err:
        stderr = getattr(err, "stderr", "")
        return (not isinstance(err, VerificationError) and "reading blob" in stderr), err
    return True, None


@pytest.mark.parametrize("case", DIR_CASES, ids=str)
def test_dir_vector_through_skopeo(case: DirCase, tmp_path: Path) -> None:
    """Each README GPG `dir-img-*` row gets its accept/reject result from skopeo under the
    policy the project generates."""
    accepted, err = skopeo_outcome(case, tmp_path)
    assert accepted is case.accept, str(err)
    if not case.accept and case.fixture != "dir-img-no-manifest":
        assert isinstance(err, VerificationError), str(err)
        assert err.hint


def test_generated_dir_policy_names_the_identity(tmp_path: Path) -> None:
    """For `dir:` sources the policy spells out the repository (a dir has no reference)."""
    trust = config.Trust(gpg_keys=(GPG / "public-key.gpg",), identity="repository")
    policy_path, _ = policy.write_policy(tmp_path, trust, reference.parse(LATEST),
                                         transport="dir")
    text = policy_path.read_text()
    assert '"exactRepository"' in text
    assert '"docker.io/testing/manifest"' in text


# -- loose *.signature files through gpgcheck ---------------------------------------------

@dataclass(frozen=True)
class SigCase:
    name: str
    expect: str  # "accept:<primary fingerprint>" or a text the rejection must contain

    def __str__(self) -> str:
        return self.name


SIG_CASES = [
    SigCase("image.signature", f"accept:{KEY}"),
    SigCase("no-optional-fields.signature", f"accept:{KEY}"),
    SigCase("subkey.signature", f"accept:{SUBKEY_PRIMARY}"),
    SigCase("subkey.signature-v3", f"accept:{SUBKEY_PRIMARY}"),
    SigCase("corrupt.signature", "BADSIG"),
    SigCase("corrupt.signature-v3", "BADSIG"),
    SigCase("expired.signature", "EXPSIG"),
    SigCase("unknown-key.signature", "NO_PUBKEY"),
    SigCase("unknown-key.signature-v3", "NO_PUBKEY"),
    SigCase("subkey-revoked.signature", "revoked"),
    SigCase("subkey-revoked.signature-v3", "revoked"),
    SigCase("unsigned-literal.signature", "no signature"),
    SigCase("unsigned-encrypted.signature", "not an OpenPGP signed message"),
    SigCase("invalid-blob.signature", "not a container signature"),
    SigCase("invalid-blob.signature-v3", "not a container signature"),
    SigCase("invalid-cleartext.signature", "not a container signature"),
    SigCase("invalid-reference.signature", "not a valid image reference"),
]


@pytest.fixture(scope="module")
def keyring() -> Iterator[Keyring]:
    """All three README keys, including the one whose subkey is revoked."""
    keys = [GPG / "public-key.gpg", GPG / "public-key-with-subkey.gpg",
            GPG / "public-key-with-revoked-subkey.gpg"]
    with Keyring(keys) as ring:
        yield ring


@pytest.mark.parametrize("case", SIG_CASES, ids=str)
def test_loose_signature(keyring: Keyring, case: SigCase) -> None:
    """Each README GPG `*.signature` row gets its result from the status-line verifier."""
    result = check_signature(keyring, (GPG / case.name).read_bytes(), DIGEST,
                             IdentityRule("docker.io/testing/manifest"))
    if case.expect.startswith("accept:"):
        assert isinstance(result, GpgMatch), result
        assert result.key == case.expect.removeprefix("accept:")
        return
    assert isinstance(result, GpgFailure)
    assert case.expect in result.reason


def test_image_signature_identity_without_registry(keyring: Keyring) -> None:
    """image.signature is also valid against the un-normalised identity testing/manifest."""
    result = check_signature(keyring, (GPG / "image.signature").read_bytes(), DIGEST,
                             IdentityRule("testing/manifest"))
    assert result == GpgMatch(key=KEY, identity="testing/manifest")


def test_exact_identity_refuses_a_tagless_signature(keyring: Keyring) -> None:
    """image.signature signs "testing/manifest" without a tag, so an exact rule refuses it."""
    result = check_signature(keyring, (GPG / "image.signature").read_bytes(), DIGEST,
                             IdentityRule("testing/manifest", exact=LATEST))
    assert isinstance(result, GpgFailure)
    assert result.kind == "identity"


def test_other_digest_is_refused(keyring: Keyring) -> None:
    """A good signature of the README manifest does not vouch for another digest."""
    other = manifest_digest(b"{}")
    result = check_signature(keyring, (GPG / "image.signature").read_bytes(), other,
                             IdentityRule("testing/manifest"))
    assert isinstance(result, GpgFailure)
    assert result.reason == f"signs {DIGEST}, not {other}"


def test_revoked_subkey_refused_although_gpg_exits_zero(keyring: Keyring) -> None:
    """gpg reports VALIDSIG for the revoked subkey's signature; the verdict is still no."""
    verdict = keyring.verify((GPG / "subkey-revoked.signature").read_bytes())
    assert any(line.startswith("VALIDSIG") for line in verdict.status)
    assert verdict.signer is None


def test_second_key_is_not_trusted_for_first_keys_signature() -> None:
    """With only public-key-2 configured, a signature by public-key is refused as unknown."""
    with Keyring([GPG / "public-key-2.gpg"]) as ring:
        assert ring.fingerprints == {KEY_2}
        result = check_signature(ring, (GPG / "image.signature").read_bytes(), DIGEST,
                                 IdentityRule("testing/manifest"))
    assert isinstance(result, GpgFailure)
    assert "NO_PUBKEY" in result.reason


def test_readme_digest_is_the_manifest_digest() -> None:
    """image.manifest.json hashes to the digest every GPG payload names."""
    assert manifest_digest((GPG / "image.manifest.json").read_bytes()) == DIGEST
