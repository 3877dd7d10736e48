"""End to end on real parts: a loop-attached GPT disk, a registry on loopback, real skopeo,
signed images, real ext4 slot images."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Machine

pytestmark = pytest.mark.needs_root


def slots(machine: Machine) -> dict[str, dict[str, object]]:
    doc = machine.status()
    return {n: {k: s[k] for k in ("present", "fs_uuid", "digest", "label")}
            for n, s in doc["slots"].items()}


def test_reconcile_installs_v1_then_v2_then_changes_nothing(machine: Machine) -> None:
    """v1 becomes active over the factory image, v2 then makes v1 passive, and a third run
    is a no-op; plan --json before each run describes exactly what apply then did."""
    world = machine.world
    factory_uuid = slots(machine)["active"]["fs_uuid"]

    machine.write_config(world.v1.reference)
    planned = json.loads(machine.reconcile("plan", "--json", "--detailed-exitcode",
                                           accept=(2,)).stdout)
    applied = json.loads(machine.reconcile("apply", "--json", "--detailed-exitcode",
                                           accept=(2,)).stdout)
    assert applied["changed"] is True
    assert applied["plan"]["steps"] == planned["steps"]
    assert [s["action"] for s in planned["steps"]] == ["fetch", "write", "promote"]
    after_v1 = slots(machine)
    assert after_v1["active"]["digest"] == world.v1.digest
    assert after_v1["active"]["label"] == "COS_ACTIVE"
    assert after_v1["passive"]["fs_uuid"] == factory_uuid
    assert after_v1["passive"]["label"] == "COS_PASSIVE"

    machine.write_config(world.v2.reference)
    planned = json.loads(machine.reconcile("plan", "--json", accept=(0,)).stdout)
    applied = json.loads(machine.reconcile("--json", accept=(0,)).stdout)
    assert applied["plan"]["steps"] == planned["steps"]
    after_v2 = slots(machine)
    assert after_v2["active"]["digest"] == world.v2.digest
    assert after_v2["passive"]["digest"] == world.v1.digest
    assert after_v2["passive"]["fs_uuid"] == after_v1["active"]["fs_uuid"]

    again = machine.reconcile("apply", "--detailed-exitcode", accept=(0,))
    assert "No changes" in again.text
    assert slots(machine) == after_v2
    status = machine.status()
    assert status["converged"] is True
    assert status["boot_mode"] == "active"


def test_installed_tree_matches_the_image_exactly(machine: Machine) -> None:
    """The active image's tree equals the image's merged layers: modes, owners, xattrs,
    hardlinks, device nodes, whiteouts and opaque directories."""
    from reconciler.sandbox.images import compare_trees

    world = machine.world
    machine.write_config(world.v1.reference)
    machine.reconcile(accept=(0,))
    machine.write_config(world.v2.reference)
    machine.reconcile(accept=(0,))
    with machine.disk.mount("COS_STATE", readonly=True) as state:
        with machine.disk.mount_image(state / "cOS/active.img") as root:
            assert compare_trees(world.v2.tree, root) == []
        with machine.disk.mount_image(state / "cOS/passive.img") as root:
            assert compare_trees(world.v1.tree, root) == []


def test_upgrade_fetches_only_the_new_layer(machine: Machine) -> None:
    """Going from v1 to v2 downloads v2's new layer but none of the shared ones."""
    world = machine.world
    machine.write_config(world.v1.reference)
    machine.reconcile(accept=(0,))
    mark = world.registry.mark()
    machine.write_config(world.v2.reference)
    machine.reconcile(accept=(0,))
    fetched = {r.blob for r in world.registry.requests(since=mark)
               if r.method == "GET" and r.blob}
    assert world.v2.layers[-1] in fetched
    assert not fetched & set(world.v1.layers)


def test_digest_pinned_noop_makes_no_registry_request(machine: Machine) -> None:
    """A converged, digest-pinned config is confirmed without talking to the registry."""
    world = machine.world
    machine.write_config(world.v1.by_digest)
    machine.reconcile(accept=(0,))
    mark = world.registry.mark()
    res = machine.reconcile("apply", "--detailed-exitcode", accept=(0,))
    assert "No changes" in res.text
    assert world.registry.requests(since=mark) == []


def test_image_larger_than_the_estimate_grows(machine: Machine, tmp_path) -> None:
    """20,000 small files exhaust the estimated image's inodes; the write step grows the
    filesystem online, re-applies the layer, and installs every file."""
    import io
    import tarfile

    from tests.test_hostile_e2e import gz, push_layer_image

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(20_000):
            info = tarfile.TarInfo(f"many/f{i:05d}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    ref = push_layer_image(machine, tmp_path, "many", gz(raw.getvalue()))
    machine.write_config(ref)
    res = machine.reconcile(accept=(0,))
    assert "growing" in res.stderr.decode()
    with machine.disk.mount("COS_STATE", readonly=True) as state, \
            machine.disk.mount_image(state / "cOS/active.img") as root:
        assert len(list((root / "many").iterdir())) == 20_000
