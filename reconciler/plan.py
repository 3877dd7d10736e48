"""The pure planner: desired + observed state in, an immutable ordered list of steps out.

No I/O here. The same Plan value is rendered by `plan` and executed by `apply`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.config import Desired
from reconciler.probe import Observed, Slot
from reconciler.reference import ImageRef

PLAN_FORMAT = 1


class Action(StrEnum):
    """What a step does; each step checks by itself whether it is already satisfied."""

    CLEANUP = "cleanup"
    VERIFY = "verify"
    FETCH = "fetch"
    WRITE = "write"
    PROMOTE = "promote"


SYMBOLS = {Action.CLEANUP: "-", Action.VERIFY: "?", Action.FETCH: "↓", Action.WRITE: "+",
           Action.PROMOTE: "~"}


@dataclass(frozen=True)
class Step:
    """One change, with the reason it is needed."""

    action: Action
    target: str
    image: str
    digest: str
    reason: str
    details: tuple[tuple[str, str], ...] = ()

    def detail(self, key: str) -> str | None:
        return dict(self.details).get(key)

    def to_json(self) -> dict[str, Any]:
        return {"action": str(self.action), "target": self.target, "image": self.image,
                "digest": self.digest, "reason": self.reason, "details": dict(self.details)}


@dataclass(frozen=True)
class Plan:
    """Prior state plus the ordered changes that make the system match the desired state."""

    desired: Mapping[str, tuple[str, str]]
    boot_mode: str
    slots: Mapping[str, Slot]
    verification: str
    steps: tuple[Step, ...] = field(default=())

    @property
    def changes(self) -> bool:
        return bool(self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": PLAN_FORMAT,
            "converged": not self.steps,
            "desired": {t: {"image": i, "digest": d} for t, (i, d) in self.desired.items()},
            "verification": self.verification,
            "prior": {
                "boot_mode": self.boot_mode,
                "slots": {n: s.to_json() for n, s in self.slots.items()},
            },
            "steps": [s.to_json() for s in self.steps],
        }

    def render(self) -> str:
        lines = [f"booted from: {self.boot_mode}"]
        for target, (image, digest) in self.desired.items():
            lines.append(f"desired {target}: {image} ({digest})")
        if not self.steps:
            lines.append("No changes. The system matches the desired state.")
            return "\n".join(lines)
        lines.append(f"Plan: {len(self.steps)} step(s)")
        for step in self.steps:
            lines.append(f"  {SYMBOLS[step.action]} {step.action:<8} {step.target:<9} "
                         f"{step.reason}")
        return "\n".join(lines)


def verification_summary(desired: Desired) -> str:
    """How images will be verified, in words shown by plan and status."""
    trust = desired.trust
    if not trust.enabled:
        return "DISABLED (verification.policy: insecure-accept-anything)"
    kinds = []
    if trust.gpg_keys:
        kinds.append(f"gpg ({len(trust.gpg_keys)} key(s))")
    if trust.cosign_keys:
        kinds.append(f"cosign ({len(trust.cosign_keys)} key(s))")
    return f"{' + '.join(kinds)}, identity: {trust.identity}"


def make_plan(desired: Desired, observed: Observed, digests: Mapping[str, str]) -> Plan:
    """Compute the plan. `digests` maps target ("system", "recovery") to the resolved digest."""
    wanted: dict[str, ImageRef] = {"system": desired.system}
    if desired.recovery is not None:
        wanted["recovery"] = desired.recovery
    steps: list[Step] = []
    if observed.leftovers:
        steps.append(Step(Action.CLEANUP, "system", "", "",
                          "finish or remove what an interrupted run left: "
                          + ", ".join(observed.leftovers)))
    for target, ref in wanted.items():
        digest = digests[target]
        current = observed.slots.get("active" if target == "system" else "recovery")
        if current is not None and current.present and current.digest == digest:
            continue
        steps.extend(_install_steps(desired, observed, target=target, ref=ref, digest=digest,
                                    current=current))
    return Plan(
        desired={t: (str(r), digests[t]) for t, r in wanted.items()},
        boot_mode=observed.boot_mode,
        slots=observed.slots,
        verification=verification_summary(desired),
        steps=tuple(steps),
    )


def _install_steps(desired: Desired, observed: Observed, *, target: str, ref: ImageRef,
                   digest: str, current: Slot | None) -> list[Step]:
    pinned = ref.pinned(digest).by_digest()
    if current is None or not current.present:
        why = f"no {target} image is installed"
    elif current.digest is None:
        why = f"the installed {target} image is not in the state record"
    else:
        why = f"installed {current.digest[:19]}… differs from desired {digest[:19]}…"
    steps: list[Step] = []
    if desired.trust.enabled and desired.trust.cosign_keys:
        steps.append(Step(Action.VERIFY, target, pinned, digest,
                          f"check cosign signatures of {pinned}"))
    gpg = desired.trust.enabled and bool(desired.trust.gpg_keys)
    steps.append(Step(Action.FETCH, target, pinned, digest,
                      f"{why}; fetch {pinned}"
                      + (" (GPG signature enforced by policy)" if gpg else ""),
                      (("verify", "gpg-policy" if gpg else "none"),)))
    steps.append(Step(Action.WRITE, target, pinned, digest,
                      f"build the new {target} image from the layers"))
    if target == "system":
        active = observed.slots.get("active")
        if observed.boot_mode == "passive":
            keep = "passive (booted from it: the last known good stays as fallback)"
            old = "the active image that failed to boot is replaced"
        elif active is not None and active.present:
            keep = f"the current active ({active.image or active.fs_uuid}) becomes passive"
            old = "the previous passive is dropped"
        else:
            keep = "no previous image to keep"
            old = ""
        reason = f"switch: new image becomes active; {keep}" + (f"; {old}" if old else "")
        steps.append(Step(Action.PROMOTE, target, pinned, digest, reason,
                          (("keep", "passive" if observed.boot_mode == "passive" else "active"),)))
    else:
        steps.append(Step(Action.PROMOTE, target, pinned, digest,
                          "switch: the new image replaces the recovery image"))
    return steps
