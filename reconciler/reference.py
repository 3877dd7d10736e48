"""Parse and validate container image references (registry/repository[:tag][@digest])."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9-]+)*(?::[0-9]+)?$")
DEFAULT_REGISTRY = "docker.io"


class ReferenceError(ValueError):
    """A string that is not a valid image reference; the message says why."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; `repository` includes the registry host."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def registry(self) -> str:
        return self.repository.split("/", 1)[0]

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def pinned(self, digest: str) -> ImageRef:
        """The same image addressed by `digest` (the tag kept for display only)."""
        return ImageRef(self.repository, self.tag, digest)

    def by_digest(self) -> str:
        """repository@digest: the form used to fetch exactly what was verified."""
        if not self.digest:
            raise ReferenceError(f"{self} is not pinned to a digest")
        return f"{self.repository}@{self.digest}"


def _redacted(text: str) -> str:
    """`text` with any "user:password@" before the registry host hidden, for messages."""
    scheme, sep, rest = text.rpartition("://")
    head, slash, tail = rest.partition("/")
    if "@" in head:
        head = "***@" + head.rsplit("@", 1)[1]
    return f"{scheme}{sep}{head}{slash}{tail}"


def parse(text: str) -> ImageRef:
    """Parse `text` (optionally prefixed with docker://); raise ReferenceError on bad input."""
    ref = text.strip()
    if ref.startswith("docker://"):
        ref = ref[len("docker://"):]
    if not ref:
        raise ReferenceError("the image reference is empty")
    if any(c.isspace() for c in ref):
        raise ReferenceError(f"image reference {_redacted(text)!r} contains white space")
    head = ref.split("/", 1)[0]
    if "://" in ref or "@" in head:
        if "@" in head:
            raise ReferenceError(
                f"image reference {_redacted(text)!r} embeds credentials; put them in a "
                "registry auth file (registry.auth_file) instead")
        raise ReferenceError(f"image reference {_redacted(text)!r} must not have a URL scheme")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST.match(digest):
            raise ReferenceError(
                f"{digest!r} is not a sha256 digest (expected sha256:<64 lowercase hex>)")
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ReferenceError(f"{tag!r} is not a valid tag")
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        host, path = parts[0], parts[1:]
        if not _HOST.match(host):
            raise ReferenceError(f"{host!r} is not a valid registry host")
    else:
        host, path = DEFAULT_REGISTRY, parts
        if len(path) == 1:
            path = ["library", *path]
    for comp in path:
        if not _COMPONENT.match(comp):
            raise ReferenceError(
                f"{comp!r} is not a valid repository path component (lowercase letters, digits, "
                "and . _ - separators)")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef("/".join([host, *path]), tag, digest)
