"""The pure planner: what it decides from desired and observed state, with no I/O."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler import config, reference
from reconciler.plan import Action, make_plan
from reconciler.probe import Observed, Slot

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
PARTS = {"COS_STATE": "/dev/fake2"}


def desired(image: str = "reg.example/cos/system:v2", **trust: object) -> config.Desired:
    t = config.Trust(gpg_keys=(Path("/k.gpg"),), **trust)  # type: ignore[arg-type]
    return config.Desired(system=reference.parse(image), source="test", trust=t)


def observed(active_digest: str | None, *, mode: str = "active", passive: bool = True,
             leftovers: tuple[str, ...] = ()) -> Observed:
    slots = {
        "active": Slot("active", "cOS/active.img", True, "COS_ACTIVE", "u-a",
                       "oci://reg.example/cos/system:v1", active_digest),
        "passive": Slot("passive", "cOS/passive.img", passive, "COS_PASSIVE", "u-p"),
    }
    return Observed(PARTS, mode, slots, leftovers)


def test_converged_system_has_no_steps() -> None:
    """Active already runs the desired digest: nothing to do."""
    plan = make_plan(desired(), observed(D2), {"system": D2})
    assert not plan.changes
    assert "No changes" in plan.render()
    assert plan.to_json()["converged"] is True


def test_new_digest_gives_fetch_write_promote_in_order() -> None:
    """A different digest is fetched, written and promoted, in that order, by digest."""
    plan = make_plan(desired(), observed(D1), {"system": D2})
    assert [s.action for s in plan.steps] == [Action.FETCH, Action.WRITE, Action.PROMOTE]
    assert all(s.image == f"reg.example/cos/system@{D2}" for s in plan.steps)
    assert plan.steps[-1].detail("keep") == "active"


def test_booted_from_passive_keeps_passive() -> None:
    """After a fallback boot the running passive is kept; the failed active is replaced."""
    plan = make_plan(desired(), observed(D1, mode="passive"), {"system": D2})
    promote = plan.steps[-1]
    assert promote.detail("keep") == "passive"
    assert "last known good" in promote.reason


def test_unknown_active_image_is_reinstalled() -> None:
    """An active image the record does not describe is not assumed to be the desired one."""
    plan = make_plan(desired(), observed(None), {"system": D2})
    assert "not in the state record" in plan.steps[0].reason


def test_cosign_adds_a_verify_step_before_fetch() -> None:
    """With cosign keys, signatures are checked before anything is downloaded."""
    d = config.Desired(system=reference.parse("reg.example/cos/system:v2"), source="t",
                       trust=config.Trust(cosign_keys=(Path("/c.pub"),)))
    plan = make_plan(d, observed(D1), {"system": D2})
    assert [s.action for s in plan.steps][:2] == [Action.VERIFY, Action.FETCH]
    assert plan.steps[1].detail("verify") == "none"


def test_leftovers_of_an_interrupted_run_are_cleaned_first() -> None:
    """An interrupted run's leftovers produce a cleanup step even when converged."""
    plan = make_plan(desired(), observed(D2, leftovers=("cOS/passive.img.pending",)),
                     {"system": D2})
    assert [s.action for s in plan.steps] == [Action.CLEANUP]


def test_plan_json_is_versioned_and_serialisable() -> None:
    """The JSON form has a format version, the prior state and the steps."""
    doc = make_plan(desired(), observed(D1), {"system": D2}).to_json()
    assert doc["format_version"] == 1
    assert doc["prior"]["slots"]["active"]["digest"] == D1
    assert [s["action"] for s in doc["steps"]] == ["fetch", "write", "promote"]
    json.dumps(doc)


def test_disabled_verification_is_visible_in_the_plan() -> None:
    """The named opt-out shows in the plan's verification summary."""
    d = config.Desired(system=reference.parse("reg.example/cos/system:v2"), source="t",
                       trust=config.Trust(policy=config.POLICY_INSECURE))
    plan = make_plan(d, observed(D1), {"system": D2})
    assert plan.verification.startswith("DISABLED")
    assert plan.steps[0].detail("verify") == "none"
