"""Transport: a TLS registry with a CA made by the test and htpasswd auth works when the config
names the CA directory and the auth file; a wrong CA or password fails at once with a clear,
permanent error; plain HTTP only for registries listed in `registry.insecure`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ExitCode
from reconciler.sandbox._tls import make_server_cert
from reconciler.tools._run import Result, run
from tests.conftest import RECONCILE, Machine, World

pytestmark = pytest.mark.needs_root

USER, PASSWORD = "user", "pw"


@dataclass(frozen=True)
class TlsWorld:
    """A TLS + basic-auth registry holding world.v1 (GPG-signed), and wrong client settings."""

    registry: Any
    image: Any
    sigstore: Path
    wrong_ca_dir: Path
    wrong_auth_file: Path
    gpg_key: Path


@pytest.fixture(scope="module")
def tls(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsWorld]:
    from reconciler.sandbox.images import ImageFactory
    from reconciler.sandbox.registry import Registry

    workdir = tmp_path_factory.mktemp("tls")
    with Registry(workdir / "registry", tls=True, htpasswd=(USER, PASSWORD)) as registry:
        assert registry.ca_dir is not None and registry.auth_file is not None
        factory = ImageFactory(workdir / "images", registry.host, authfile=registry.auth_file)
        image = factory.push(world.v1, f"{registry.host}/cos/system:v1", key=world.key)
        other_ca = make_server_cert(workdir / "other-ca")
        wrong_ca_dir = workdir / "wrong-certs.d"
        wrong_ca_dir.mkdir()
        (wrong_ca_dir / "ca.crt").write_bytes(other_ca.ca_cert.read_bytes())
        wrong_auth = workdir / "wrong-auth.json"
        token = base64.b64encode(f"{USER}:not-{PASSWORD}".encode()).decode()
        wrong_auth.write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))
        yield TlsWorld(registry, image, factory.sigstore, wrong_ca_dir, wrong_auth,
                       world.key.public_key)


def config_doc(tls: TlsWorld, image: str, registry: dict[str, Any]) -> dict[str, Any]:
    return {"reconciler_format": 1, "system": {"image": image},
            "verification": {"gpg": {"keys": [str(tls.gpg_key)],
                                     "lookaside": f"file://{tls.sigstore}"}},
            "registry": registry,
            "retries": {"attempts": 3, "initial_wait_s": 0, "max_wait_s": 0}}


def verify(tmp_path: Path, doc: dict[str, Any]) -> Result:
    path = tmp_path / "upgrade.yaml"
    path.write_text(json.dumps(doc))
    return run([RECONCILE, "--config", str(path), "verify", doc["system"]["image"]],
               accept=range(256), timeout=120)


def good_registry(tls: TlsWorld, **changes: Any) -> dict[str, Any]:
    return {"cert_dir": str(tls.registry.ca_dir), "auth_file": str(tls.registry.auth_file),
            **changes}


def permanent_failure(res: Result) -> str:
    """The one error line of an exit-1 failure that was not retried."""
    stderr = res.stderr.decode()
    assert res.returncode == ExitCode.FAILURE, stderr
    assert "Traceback" not in stderr
    assert "gave up after" not in stderr
    assert "transient failure, retrying" not in stderr
    assert "hint:" in stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("reconcile: error:")]
    assert len(errors) == 1, stderr
    return errors[0] + "\n" + stderr.split("hint:", 1)[1]


def handshake_errors(tls: TlsWorld) -> int:
    tls.registry.requests()  # flush: everything answered so far is in the log
    log_path: Path = tls.registry.log_path
    return log_path.read_text(errors="replace").count("TLS handshake error")


def test_verify_over_tls_with_auth(tls: TlsWorld, tmp_path: Path) -> None:
    """With cert_dir and auth_file configured, `verify` reaches the registry and accepts v1."""
    res = verify(tmp_path, config_doc(tls, tls.image.reference, good_registry(tls)))
    assert res.returncode == 0, res.stderr.decode()
    assert tls.image.digest in res.text


def test_plan_and_apply_over_tls_with_auth(tls: TlsWorld, machine: Machine) -> None:
    """`plan` and `apply` resolve and fetch the image over TLS with the configured login."""
    machine.config.write_text(json.dumps(config_doc(tls, tls.image.reference,
                                                    good_registry(tls))))
    plan = json.loads(machine.reconcile("plan", "--json", accept=(0,)).stdout)
    assert [s["action"] for s in plan["steps"]] == ["fetch", "write", "promote"]
    since = tls.registry.mark()
    machine.reconcile("apply", accept=(0,))
    assert machine.status()["slots"]["active"]["digest"] == tls.image.digest
    assert set(tls.image.layers) <= set(tls.registry.blob_gets(since))


def test_wrong_ca_fails_once_and_clearly(tls: TlsWorld, tmp_path: Path) -> None:
    """A CA directory with another CA: exit 1 naming the certificate problem, pointing at
    registry.cert_dir, after a single attempt (as many TLS handshakes as one skopeo call)."""
    flags = ["--cert-dir", str(tls.wrong_ca_dir), "--authfile", str(tls.registry.auth_file)]
    before = handshake_errors(tls)
    run(["skopeo", "inspect", "--raw", "--retry-times=0", *flags,
         f"docker://{tls.image.reference}"], accept=(1,))
    one_attempt = handshake_errors(tls) - before
    assert one_attempt > 0

    before = handshake_errors(tls)
    res = verify(tmp_path, config_doc(tls, tls.image.reference,
                                      good_registry(tls, cert_dir=str(tls.wrong_ca_dir))))
    text = permanent_failure(res)
    assert "certificate signed by unknown authority" in text
    assert "registry.cert_dir" in text
    assert handshake_errors(tls) - before == one_attempt


def test_missing_ca_fails_clearly(tls: TlsWorld, tmp_path: Path) -> None:
    """Without cert_dir the test CA is unknown: the same clear, permanent certificate error."""
    registry = {"auth_file": str(tls.registry.auth_file)}
    text = permanent_failure(verify(tmp_path, config_doc(tls, tls.image.reference, registry)))
    assert "certificate signed by unknown authority" in text


def test_wrong_password_fails_once_and_clearly(tls: TlsWorld, tmp_path: Path) -> None:
    """A wrong password: exit 1 saying authentication failed, pointing at registry.auth_file,
    and exactly one manifest request in the registry log (not retried)."""
    since = tls.registry.mark()
    res = verify(tmp_path, config_doc(tls, tls.image.reference,
                                      good_registry(tls, auth_file=str(tls.wrong_auth_file))))
    text = permanent_failure(res)
    assert "unauthorized" in text
    assert "registry.auth_file" in text
    manifest_gets = [r for r in tls.registry.requests(since) if "/manifests/" in r.path]
    assert [r.status for r in manifest_gets] == [401]


def test_plain_http_registry_not_listed_is_refused(world: World, tmp_path: Path) -> None:
    """A plain-HTTP registry that is not in registry.insecure fails with a hint to list it."""
    doc = {"reconciler_format": 1, "system": {"image": world.v1.reference},
           "verification": {"gpg": {"keys": [str(world.key.public_key)],
                                    "lookaside": f"file://{world.factory.sigstore}"}},
           "retries": {"attempts": 3, "initial_wait_s": 0, "max_wait_s": 0}}
    text = permanent_failure(verify(tmp_path, doc))
    assert "plain HTTP" in text
    assert "registry.insecure" in text

    doc["registry"] = {"insecure": [world.host]}
    assert verify(tmp_path, doc).returncode == 0


def test_status_shows_insecure_registries(machine: Machine) -> None:
    """`status` lists the registries reached over plain HTTP, in JSON and in text."""
    host = machine.world.host
    machine.write_config(machine.world.v1.reference)
    assert machine.status()["insecure_registries"] == [host]
    text = machine.reconcile("status", accept=(0,)).text
    assert f"plain-HTTP registries: {host}" in text


def test_status_without_insecure_registries(machine: Machine, tls: TlsWorld) -> None:
    """With only TLS registries configured, `status` lists no plain-HTTP registry."""
    machine.config.write_text(json.dumps(config_doc(tls, tls.image.reference,
                                                    good_registry(tls))))
    assert machine.status()["insecure_registries"] == []
    assert "plain-HTTP" not in machine.reconcile("status", accept=(0,)).text
