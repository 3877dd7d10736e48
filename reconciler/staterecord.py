"""The installed state record (state.yaml on COS_STATE): read it, and replace it atomically.

The layout follows upstream Elemental's state.yaml (per image: source, digest, date, fromAction)
and adds each image's filesystem UUID, which is how a record entry is matched to the image file
actually present in a slot. A `pending` entry is written before a switch, so a crash between the
switch and the final write still lets the next run identify the new image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler import durable

RECORD_NAME = "state.yaml"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ImageRecord:
    """What was installed into one slot."""

    source: str
    digest: str
    fs_uuid: str
    date: str
    verified: str = "unknown"
    fromAction: str = "reconcile"  # upstream's key name


@dataclass(frozen=True)
class StateRecord:
    """All images the record knows, by role at the time of writing."""

    active: ImageRecord | None = None
    passive: ImageRecord | None = None
    pending: ImageRecord | None = None
    recovery: ImageRecord | None = None

    def by_uuid(self, fs_uuid: str | None) -> ImageRecord | None:
        """The entry describing the filesystem with `fs_uuid`, whatever its role."""
        if not fs_uuid:
            return None
        for entry in (self.active, self.passive, self.pending, self.recovery):
            if entry and entry.fs_uuid == fs_uuid:
                return entry
        return None


def now() -> str:
    """Current time in the record's format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry(raw: Any) -> ImageRecord | None:
    if not isinstance(raw, dict):
        return None
    try:
        return ImageRecord(
            source=str(raw["source"]), digest=str(raw["digest"]),
            fs_uuid=str(raw.get("fs_uuid", "")), date=str(raw.get("date", "")),
            verified=str(raw.get("verified", "unknown")),
            fromAction=str(raw.get("fromAction", "")))
    except KeyError:
        return None


def read(state_root: Path) -> StateRecord | None:
    """The record under the COS_STATE mount, or None when absent or unreadable."""
    try:
        data = yaml.safe_load((state_root / RECORD_NAME).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    state = data.get("state") if isinstance(data.get("state"), dict) else {}
    recovery = data.get("recovery") if isinstance(data.get("recovery"), dict) else {}
    ours = data.get("reconciler") if isinstance(data.get("reconciler"), dict) else {}
    assert isinstance(state, dict) and isinstance(recovery, dict) and isinstance(ours, dict)
    return StateRecord(
        active=_entry(state.get("active")), passive=_entry(state.get("passive")),
        pending=_entry(ours.get("pending")), recovery=_entry(recovery.get("recovery")))


def write(state_root: Path, record: StateRecord) -> None:
    """Replace the record atomically: write a temporary file, fsync, rename, fsync the dir."""
    def dump(entry: ImageRecord | None) -> dict[str, str] | None:
        return asdict(entry) if entry else None

    doc: dict[str, Any] = {
        "date": now(),
        "state": {"label": "COS_STATE", "active": dump(record.active),
                  "passive": dump(record.passive)},
        "reconciler": {"format": FORMAT_VERSION, "pending": dump(record.pending)},
    }
    if record.recovery:
        doc["recovery"] = {"label": "COS_RECOVERY", "recovery": dump(record.recovery)}
    durable.replace_atomically(state_root / RECORD_NAME,
                               yaml.safe_dump(doc, sort_keys=False).encode())
