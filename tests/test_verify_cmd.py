"""`reconcile verify IMAGE` end to end against the sandbox registry: GPG (lookaside) and cosign
(`sha256-<hex>.sig` manifests pushed with skopeo), our own signatures and the real vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reconciler import config, reference
from reconciler.errors import ExitCode, VerificationError
from reconciler.sandbox.oci import CONFIG_TYPE, INDEX_TYPE, MANIFEST_TYPE, REF_NAME
from reconciler.steps import verify
from reconciler.tools._run import Result, run
from reconciler.trust import (
    COSIGN_SIG_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    SignatureLayer,
    load_public_keys,
    manifest_digest,
    read_dir_signatures,
    sig_tag,
    verify_cosign,
)
from tests.conftest import RECONCILE, World
from tests.test_trust_cosign import CASES, REASONS, VECTORS
from tests.test_trust_cosign import Case as CosignCase

pytestmark = pytest.mark.needs_root


# -- helpers ------------------------------------------------------------------------------

def write_config(path: Path, world: World, image: str, verification: dict[str, Any]) -> Path:
    doc = {"reconciler_format": 1, "system": {"image": image}, "verification": verification,
           "registry": {"insecure": [world.host]},
           "retries": {"attempts": 2, "initial_wait_s": 0, "max_wait_s": 0}}
    path.write_text(json.dumps(doc))
    return path


def gpg_trust(world: World) -> dict[str, Any]:
    return {"gpg": {"keys": [str(world.key.public_key)],
                    "lookaside": f"file://{world.factory.sigstore}"}}


def reconcile_verify(config_path: Path, image: str, *args: str) -> Result:
    return run([RECONCILE, "--config", str(config_path), "verify", image, *args],
               accept=range(256), timeout=120)


def refused(res: Result) -> str:
    """The single error line of a verification failure (exit 4, a hint, no traceback)."""
    stderr = res.stderr.decode()
    assert res.returncode == ExitCode.VERIFICATION, stderr
    assert "Traceback" not in stderr
    assert "hint:" in stderr
    assert len([ln for ln in stderr.splitlines() if ln.startswith("reconcile: error:")]) == 1
    return stderr


def new_cosign_key(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    private = ec.generate_private_key(ec.SECP256R1())
    path = directory / f"{name}.pub"
    path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, path


def cosign_layer(private: ec.EllipticCurvePrivateKey, repository: str,
                 digest: str) -> SignatureLayer:
    """What `cosign sign --key` stores for repository@digest (compact, sorted payload)."""
    payload = json.dumps({"critical": {"identity": {"docker-reference": repository},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"},
                          "optional": None}, separators=(",", ":"), sort_keys=True).encode()
    der = private.sign(payload, ec.ECDSA(hashes.SHA256()))
    return SignatureLayer(COSIGN_SIG_MEDIA_TYPE, payload,
                          {SIGNATURE_ANNOTATION: base64.b64encode(der).decode()})


def push_sig_manifest(world: World, workdir: Path, repository: str, digest: str,
                      layers: list[SignatureLayer]) -> str:
    """Build an OCI layout holding a cosign `.sig` manifest (one layer per signature) and push
    it with skopeo to repository:sha256-<hex>.sig; return the pushed reference."""
    blobs = workdir / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def add(data: bytes) -> dict[str, Any]:
        blob_digest = manifest_digest(data)
        (blobs / blob_digest.removeprefix("sha256:")).write_bytes(data)
        return {"digest": blob_digest, "size": len(data)}

    diff_ids = [manifest_digest(layer.payload) for layer in layers]
    image_config = json.dumps({"architecture": "", "os": "", "config": {},
                               "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, **add(image_config)},
                "layers": [{"mediaType": layer.media_type, **add(layer.payload),
                            "annotations": dict(layer.annotations)} for layer in layers]}
    tag = sig_tag(digest)
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE,
             "manifests": [{"mediaType": MANIFEST_TYPE, **add(json.dumps(manifest).encode()),
                            "annotations": {REF_NAME: tag}}]}
    (workdir / "index.json").write_text(json.dumps(index))
    (workdir / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    target = f"{repository}:{tag}"
    run(["skopeo", "--policy", str(world.factory.push_policy), "copy", "--quiet",
         "--dest-tls-verify=false", f"oci:{workdir}:{tag}", f"docker://{target}"], timeout=120)
    return target


def desired_for(world: World, image: str, **trust: Any) -> config.Desired:
    return config.Desired(system=reference.parse(image), source="test",
                          trust=config.Trust(**trust),
                          registry=config.RegistryOptions(insecure=(world.host,)),
                          retries=config.Retries(attempts=1, initial_wait_s=0, max_wait_s=0))


# -- GPG ----------------------------------------------------------------------------------

def test_gpg_signed_image_verifies(world: World, tmp_path: Path) -> None:
    """The signed v1 verifies; the output names the key fingerprint and the signed identity."""
    cfg = write_config(tmp_path / "c.yaml", world, world.v1.reference, gpg_trust(world))
    res = reconcile_verify(cfg, world.v1.reference, "--json")
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(res.stdout)
    assert doc["digest"] == world.v1.digest
    assert doc["gpg"] == {"key": world.key.fingerprint, "identity": world.v1.reference,
                          "signature": 1}
    text = reconcile_verify(cfg, world.v1.reference)
    assert world.key.fingerprint in text.text
    assert world.v1.reference in text.text


def test_gpg_verify_downloads_no_layer(world: World, tmp_path: Path) -> None:
    """Verification reads the manifest and signatures only: no layer blob is requested."""
    cfg = write_config(tmp_path / "c.yaml", world, world.v1.reference, gpg_trust(world))
    since = world.registry.mark()
    assert reconcile_verify(cfg, world.v1.reference).returncode == 0
    assert world.registry.blob_gets(since) == []


def test_gpg_unsigned_image_is_refused(world: World, tmp_path: Path) -> None:
    """An unsigned image exits with the verification code and says no signature was found."""
    unsigned = world.factory.push(world.v1, f"{world.host}/cos/verify-unsigned:v1")
    cfg = write_config(tmp_path / "c.yaml", world, unsigned.reference, gpg_trust(world))
    assert "no GPG signature found" in refused(reconcile_verify(cfg, unsigned.reference))


def test_gpg_other_key_is_refused(world: World, tmp_path: Path) -> None:
    """An image signed only by an unconfigured key is refused, naming the signing key."""
    other = world.factory.push(world.v1, f"{world.host}/cos/verify-otherkey:v1",
                               key=world.other_key)
    cfg = write_config(tmp_path / "c.yaml", world, other.reference, gpg_trust(world))
    stderr = refused(reconcile_verify(cfg, other.reference))
    assert "signature 1:" in stderr
    assert "not configured" in stderr


def test_gpg_exact_identity_refuses_other_tag(world: World, tmp_path: Path) -> None:
    """With identity 'exact', v1's signature (made for :v1) does not vouch for another tag of
    the same digest."""
    retagged = world.factory.push(world.v1, f"{world.host}/cos/system:verify-retagged")
    trust = {**gpg_trust(world), "identity": "exact"}
    cfg = write_config(tmp_path / "c.yaml", world, retagged.reference, trust)
    stderr = refused(reconcile_verify(cfg, retagged.reference))
    assert f"does not match exact reference {retagged.reference}" in stderr
    assert reconcile_verify(cfg, world.v1.reference).returncode == 0


def test_gpg_second_signature_by_trusted_key_suffices(world: World, tmp_path: Path) -> None:
    """signature-1 by another key, signature-2 by the configured one: accepted as number 2."""
    image = world.factory.push(world.v1, f"{world.host}/cos/verify-mixed:v1",
                               key=world.other_key)
    world.factory.sign(image, world.key)
    cfg = write_config(tmp_path / "c.yaml", world, image.reference, gpg_trust(world))
    res = reconcile_verify(cfg, image.reference, "--json")
    assert res.returncode == 0, res.stderr.decode()
    assert json.loads(res.stdout)["gpg"]["signature"] == 2


def test_gpg_without_lookaside_is_a_config_error(world: World, tmp_path: Path) -> None:
    """GPG keys but no lookaside: `verify` cannot find signatures and says which key to set."""
    cfg = write_config(tmp_path / "c.yaml", world, world.v1.reference,
                       {"gpg": {"keys": [str(world.key.public_key)]}})
    res = reconcile_verify(cfg, world.v1.reference)
    assert res.returncode == ExitCode.CONFIG
    assert "verification.gpg.lookaside is not set" in res.stderr.decode()


# -- cosign, our own key ------------------------------------------------------------------

def test_cosign_signed_image_verifies_and_other_key_is_refused(world: World,
                                                               tmp_path: Path) -> None:
    """A `.sig` manifest signed with a fresh P-256 key verifies with that key configured and
    is refused with another key."""
    image = world.factory.push(world.v1, f"{world.host}/cos/verify-cosign:v1")
    private, public = new_cosign_key(tmp_path, "cosign")
    _, stranger = new_cosign_key(tmp_path, "stranger")
    push_sig_manifest(world, tmp_path / "sig", image.repository, image.digest,
                      [cosign_layer(private, image.repository, image.digest)])

    good = write_config(tmp_path / "good.yaml", world, image.reference,
                        {"cosign": {"keys": [str(public)]}})
    res = reconcile_verify(good, image.reference, "--json")
    assert res.returncode == 0, res.stderr.decode()
    assert json.loads(res.stdout)["cosign"] == {"key": str(public),
                                                "identity": image.repository,
                                                "digest": image.digest}

    bad = write_config(tmp_path / "bad.yaml", world, image.reference,
                       {"cosign": {"keys": [str(stranger)]}})
    assert "no configured key verifies it" in refused(reconcile_verify(bad, image.reference))


def test_cosign_unsigned_image_is_refused(world: World, tmp_path: Path) -> None:
    """Without a `.sig` tag, cosign verification fails with the verification code."""
    image = world.factory.push(world.v1, f"{world.host}/cos/verify-nocosign:v1")
    _, public = new_cosign_key(tmp_path, "cosign")
    cfg = write_config(tmp_path / "c.yaml", world, image.reference,
                       {"cosign": {"keys": [str(public)]}})
    assert "no cosign signature found" in refused(reconcile_verify(cfg, image.reference))


# -- cosign, the real vectors pushed into the registry ------------------------------------

VALID = "dir-img-cosign-valid"
SAMPLE = "192.168.64.2:5000/cosign-signed-single-sample"


def vectors() -> Path:
    cosign = VECTORS / "cosign"
    if not (cosign / "cosign.pub").is_file():
        pytest.skip(f"cosign signature vectors not found at {cosign} (set COS_VECTORS)")
    return cosign


@pytest.fixture(scope="module")
def pushed_vectors(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each cosign fixture's signature-N files, pushed as one `.sig` manifest to
    HOST/vectors/<fixture>:sha256-<hex of its manifest.json>.sig; fixture -> digest."""
    root = vectors()
    digests = {}
    for directory in sorted(root.glob("dir-img-cosign-*")):
        if not (directory / "manifest.json").is_file():
            continue  # no manifest, no digest to store signatures under
        digest = manifest_digest((directory / "manifest.json").read_bytes())
        push_sig_manifest(world, tmp_path_factory.mktemp(directory.name),
                          f"{world.host}/vectors/{directory.name}", digest,
                          read_dir_signatures(directory))
        digests[directory.name] = digest
    return digests


PUSHABLE = [case for case in CASES if case.fixture != "dir-img-cosign-no-manifest"]


@pytest.mark.parametrize("case", PUSHABLE, ids=str)
def test_cosign_vector_from_registry(world: World, pushed_vectors: dict[str, str],
                                     case: CosignCase) -> None:
    """Each README cosign row read back from the registry's `.sig` tag by the verify step's
    fetch gives the README result (identity rules name the README's original registry)."""
    root = vectors()
    digest = pushed_vectors[case.fixture]
    ref = reference.parse(f"{world.host}/vectors/{case.fixture}@{digest}")
    layers = verify.fetch_signatures(desired_for(world, str(ref)), ref, digest)
    assert layers == read_dir_signatures(root / case.fixture)
    keys = load_public_keys([root / name for name in case.keys])
    if case.expect == "accept":
        assert verify_cosign(layers, manifest_digest=digest, keys=keys,
                             identity=case.identity).digest == digest
        return
    with pytest.raises(VerificationError) as caught:
        verify_cosign(layers, manifest_digest=digest, keys=keys, identity=case.identity)
    assert REASONS[case.expect] in caught.value.message


def test_cosign_vector_under_registry_name_fails_on_identity_only(
        world: World, pushed_vectors: dict[str, str]) -> None:
    """Through the verify step with the name it is pulled by, the valid vector passes key and
    digest checks and is refused only because it was signed for 192.168.64.2:5000."""
    root = vectors()
    ref = reference.parse(f"{world.host}/vectors/{VALID}")
    desired = desired_for(world, str(ref), cosign_keys=(root / "cosign.pub",))
    with pytest.raises(VerificationError) as caught:
        verify.check(desired, ref, pushed_vectors[VALID])
    assert caught.value.message.endswith(
        f"signature 1: identity {SAMPLE} does not match repository {ref.repository}")


def test_vector_manifest_cannot_be_pushed_as_an_image(world: World) -> None:
    """The vector's manifest.json names blobs the vectors do not include, so the registry
    refuses it (MANIFEST_BLOB_UNKNOWN): the signed image itself cannot be served, only its
    signatures, which is why the vector is checked by digest and not via `reconcile verify`."""
    import urllib.error
    import urllib.request

    body = (vectors() / VALID / "manifest.json").read_bytes()
    request = urllib.request.Request(
        f"{world.registry.url}/v2/vectors/{VALID}/manifests/latest", data=body, method="PUT",
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=10)
    assert caught.value.code == 400
    assert b"MANIFEST_BLOB_UNKNOWN" in caught.value.read()
