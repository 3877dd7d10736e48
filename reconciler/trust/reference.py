"""Parse and normalise docker image references the way containers/image compares identities.

Grammar and normalisation follow distribution/reference (`ParseNormalizedNamed`): a registry
host is the first path element only if it contains "." or ":" or is "localhost", so
"host:5000/repo:tag" splits at the *last* colon after the last "/"; Docker Hub names get
"docker.io/" and, for single-element names, "library/".
Unlike `reconciler.reference.parse` (which fills in ":latest" for pulling), a bare repository
stays bare: identity matching must tell "repo" from "repo:latest".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
_NAME_MAX = 255

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"


@dataclass(frozen=True)
class DockerReference:
    """A normalised image reference: repository name plus optional tag and digest."""

    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name_only(self) -> bool:
        """True when the reference names a repository without tag or digest."""
        return self.tag is None and self.digest is None

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += ":" + self.tag
        if self.digest is not None:
            text += "@" + self.digest
        return text


def _split_domain(text: str) -> tuple[str, str]:
    first, slash, rest = text.partition("/")
    if not slash or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, text
    else:
        domain, remainder = first, rest
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse_reference(text: str) -> DockerReference:
    """Parse and normalise `text` ("repo", "host:port/repo:tag", "repo@sha256:..."); ValueError."""
    if _IDENTIFIER.fullmatch(text):
        raise ValueError(f"{text!r} is a 64-hex image ID, not a repository name")
    domain, remainder = _split_domain(text)
    repository = remainder.split("@", 1)[0].split(":", 1)[0]
    if repository.lower() != repository:
        raise ValueError(f"repository name {repository!r} must be lowercase")
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        raise ValueError(f"{text!r} is not a valid image reference")
    name, tag, digest = match.group(1, 2, 3)
    if len(name) > _NAME_MAX:
        raise ValueError(f"repository name in {text!r} is longer than {_NAME_MAX} characters")
    return DockerReference(name=name, tag=tag, digest=digest)
