"""promote: make the new image boot next, keep the right fallback, record it atomically.

The switch is a rename over /cOS/active.img, so the path always names a complete image. The
previous active is first hard-linked to passive.img.pending, relabelled COS_PASSIVE after the
switch, then renamed over passive.img. When the system booted from passive (a fallback boot),
passive is the last known good and is never touched. The state record gets a `pending` entry
before the switch and its final form after it; both writes are atomic.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from reconciler import durable, logs, probe, staterecord
from reconciler.errors import SystemLayoutError
from reconciler.plan import Step
from reconciler.staterecord import ImageRecord, StateRecord
from reconciler.steps.context import Context
from reconciler.steps.write import discard, read_marker, transition_path
from reconciler.tools import blockdev, e2fs

log = logs.get_logger(__name__)


def _uuid(path: Path) -> str | None:
    infos = blockdev.probe([path]) if path.is_file() else []
    return infos[0].uuid if infos else None


def verified_how(ctx: Context) -> str:
    """What the record says about how the image was verified."""
    trust = ctx.desired.trust
    if not trust.enabled:
        return "no (verification.policy: insecure-accept-anything)"
    kinds = [k for k, keys in (("gpg", trust.gpg_keys), ("cosign", trust.cosign_keys)) if keys]
    return "+".join(kinds)


def promote(ctx: Context, step: Step) -> None:
    """Switch the target slot to the transition image built for `step.digest`."""
    if step.target == "recovery":
        _promote_recovery(ctx, step)
        return
    root = ctx.state_root
    active = root / probe.SLOT_FILES["active"]
    passive = root / probe.SLOT_FILES["passive"]
    pending_passive = root / probe.PASSIVE_PENDING_FILE
    transition = transition_path(ctx, "system")
    record = staterecord.read(root) or StateRecord()
    done = read_marker(transition)
    old_active = record.by_uuid(_uuid(active))
    if done is None or done.get("digest") != step.digest:
        if old_active and old_active.digest == step.digest:
            log.info("promote: already active", digest=step.digest)
            return
        raise SystemLayoutError(f"no finished transition image for {step.digest} on COS_STATE",
                                hint="run reconcile again; the write step rebuilds it")
    new = ImageRecord(source=f"oci://{step.image}", digest=step.digest,
                      fs_uuid=done["fs_uuid"], date=staterecord.now(), verified=verified_how(ctx))
    staterecord.write(root, dataclasses.replace(record, pending=new))

    keep_active = step.detail("keep") == "active" and active.is_file()
    pending_passive.unlink(missing_ok=True)
    if keep_active:
        os.link(active, pending_passive)
        durable.fsync_path(active.parent, directory=True)
    os.rename(transition, active)           # the switch: atomic, active.img always complete
    durable.fsync_path(active.parent, directory=True)
    probe.marker_path(transition).unlink(missing_ok=True)
    if keep_active:
        e2fs.set_label(pending_passive, "COS_PASSIVE")
        os.rename(pending_passive, passive)
        durable.fsync_path(passive.parent, directory=True)
        passive_entry = old_active
    else:
        passive_entry = record.by_uuid(_uuid(passive))
    staterecord.write(root, StateRecord(active=new, passive=passive_entry, pending=None,
                                        recovery=record.recovery))
    log.info("promote: new image is active", digest=step.digest,
             passive=passive_entry.digest if passive_entry else None)


def _promote_recovery(ctx: Context, step: Step) -> None:
    root = ctx.target_root("recovery")
    image = root / probe.RECOVERY_FILE
    transition = transition_path(ctx, "recovery")
    record = staterecord.read(ctx.state_root) or StateRecord()
    done = read_marker(transition)
    if done is None or done.get("digest") != step.digest:
        current = record.by_uuid(_uuid(image))
        if current and current.digest == step.digest:
            return
        raise SystemLayoutError(f"no finished recovery image for {step.digest}",
                                hint="run reconcile again; the write step rebuilds it")
    new = ImageRecord(source=f"oci://{step.image}", digest=step.digest,
                      fs_uuid=done["fs_uuid"], date=staterecord.now(), verified=verified_how(ctx))
    os.rename(transition, image)
    durable.fsync_path(image.parent, directory=True)
    probe.marker_path(transition).unlink(missing_ok=True)
    staterecord.write(ctx.state_root, dataclasses.replace(record, recovery=new))


def cleanup(ctx: Context, step: Step) -> None:
    """Finish a switch an interrupted run left half done, and drop unfinished images."""
    del step
    root = ctx.state_root
    active = root / probe.SLOT_FILES["active"]
    passive = root / probe.SLOT_FILES["passive"]
    pending_passive = root / probe.PASSIVE_PENDING_FILE
    record = staterecord.read(root) or StateRecord()
    if pending_passive.exists():
        if active.exists() and os.stat(active).st_ino == os.stat(pending_passive).st_ino:
            pending_passive.unlink()   # interrupted before the switch: nothing to finish
        else:
            e2fs.set_label(pending_passive, "COS_PASSIVE")
            os.rename(pending_passive, passive)
        durable.fsync_path(root / "cOS", directory=True)
        active_entry = record.by_uuid(_uuid(active))
        passive_entry = record.by_uuid(_uuid(passive))
        staterecord.write(root, StateRecord(active=active_entry, passive=passive_entry,
                                            pending=None, recovery=record.recovery))
    transition = root / probe.TRANSITION_FILE
    if transition.exists() and read_marker(transition) is None:
        discard(transition)
    log.info("cleanup: leftovers of an interrupted run handled")
