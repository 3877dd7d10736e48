"""Reconcile with cosign keys: signatures are checked from the registry before any layer is
fetched, and the image is then pulled by exactly the verified digest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.errors import ExitCode
from tests.conftest import Machine
from tests.test_verify_cmd import cosign_layer, new_cosign_key, push_sig_manifest

pytestmark = pytest.mark.needs_root


def test_cosign_signed_image_is_verified_then_installed(machine: Machine,
                                                        tmp_path: Path) -> None:
    """The plan verifies first, apply installs the signed digest and records cosign."""
    world = machine.world
    image = world.factory.push(world.v1, f"{world.host}/cos/cosign-e2e:v1")
    private, public = new_cosign_key(tmp_path, "release")
    push_sig_manifest(world, tmp_path / "sig", image.repository, image.digest,
                      [cosign_layer(private, image.repository, image.digest)])
    machine.write_config(image.reference, verification={"cosign": {"keys": [str(public)]}})
    plan = json.loads(machine.reconcile("plan", "--json", accept=(0,)).stdout)
    assert [s["action"] for s in plan["steps"]] == ["verify", "fetch", "write", "promote"]
    assert plan["steps"][1]["image"] == image.by_digest
    machine.reconcile(accept=(0,))
    active = machine.status()["slots"]["active"]
    assert (active["digest"], active["verified"]) == (image.digest, "cosign")


def test_cosign_wrong_key_fetches_nothing(machine: Machine, tmp_path: Path) -> None:
    """Signed by a key that is not configured: refused before a single layer is downloaded."""
    world = machine.world
    image = world.factory.push(world.v2, f"{world.host}/cos/cosign-e2e-bad:v2")
    private, _ = new_cosign_key(tmp_path, "stranger")
    _, trusted = new_cosign_key(tmp_path, "trusted")
    push_sig_manifest(world, tmp_path / "sig", image.repository, image.digest,
                      [cosign_layer(private, image.repository, image.digest)])
    machine.write_config(image.reference, verification={"cosign": {"keys": [str(trusted)]}})
    before = machine.status()["slots"]
    mark = world.registry.mark()
    res = machine.reconcile(accept=(int(ExitCode.VERIFICATION),))
    assert "no configured key verifies it" in res.stderr.decode()
    fetched = {r.blob for r in world.registry.requests(since=mark) if r.blob}
    assert not fetched & set(image.layers)
    assert machine.status()["slots"] == before
