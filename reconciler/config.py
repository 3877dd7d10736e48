"""The desired-state file: load, validate against schemas/upgrade.schema.json, and freeze.

Every problem is collected and reported at once, each with file, line, JSON path and a hint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import reference, yamlsafe
from reconciler.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "upgrade.schema.json"
FORMAT_VERSION = 1
DEFAULT_CONFIG = "/oem/upgrade.yaml"
POLICY_SIGNED = "signed"
POLICY_INSECURE = "insecure-accept-anything"
VALIDATED_DIR = Path(os.environ.get("RECONCILE_RUN_DIR", "/run/cos-reconciler")) / "validated"


@dataclass(frozen=True)
class Trust:
    """What a signature must satisfy before an image is installed."""

    policy: str = POLICY_SIGNED
    gpg_keys: tuple[Path, ...] = ()
    gpg_lookaside: str | None = None
    cosign_keys: tuple[Path, ...] = ()
    identity: str = "repository"

    @property
    def enabled(self) -> bool:
        return self.policy == POLICY_SIGNED


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries: TLS, CA certificates, credentials, plain-HTTP exceptions."""

    tls_verify: bool = True
    cert_dir: Path | None = None
    auth_file: Path | None = None
    insecure: tuple[str, ...] = ()

    def tls_for(self, registry: str) -> bool:
        """Whether TLS (with verification) is used for `registry`."""
        return self.tls_verify and registry not in self.insecure


@dataclass(frozen=True)
class Retries:
    """Bounds for retrying transient failures."""

    attempts: int = 4
    initial_wait_s: float = 1.0
    max_wait_s: float = 20.0


@dataclass(frozen=True)
class Desired:
    """The whole desired state, as read from the file (or the command line)."""

    system: reference.ImageRef
    source: str
    recovery: reference.ImageRef | None = None
    trust: Trust = field(default_factory=Trust)
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    retries: Retries = field(default_factory=Retries)
    cache_dir: Path | None = None
    lock_timeout_s: float = 60.0
    fingerprint: str = ""


@dataclass(frozen=True)
class Problem:
    """One located problem in a config file."""

    path: tuple[str | int, ...]
    line: int | None
    message: str
    hint: str

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        jpath = "/" + "/".join(_printable(str(p)) for p in self.path)
        return f"{where}: {jpath}: {self.message} (hint: {self.hint})"


def _printable(text: str) -> str:
    """`text` with control characters escaped, so a hostile key cannot break message lines."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def _hint_for(err: Any) -> str:
    validator = err.validator
    if validator == "additionalProperties":
        return "remove the unknown key or fix its spelling (see configs/ for examples)"
    if validator == "required":
        return "add the missing key (see configs/ for examples)"
    if validator == "const" and err.absolute_path and err.absolute_path[-1] == "reconciler_format":
        return f"set reconciler_format: {FORMAT_VERSION}"
    if validator == "enum":
        return "use one of: " + ", ".join(map(str, err.validator_value))
    if validator == "type":
        return f"give a value of type {err.validator_value}"
    return "see schemas/upgrade.schema.json"


def load(path: Path) -> Desired:
    """Read, validate and freeze the config at `path`."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigError(f"{source}: no such file",
                          hint="create it (see configs/ for examples) or pass --config") from err
    except OSError as err:
        raise ConfigError(f"{source}: cannot read: {err.strerror}",
                          hint="check the path and its permissions") from err
    return parse(raw, source=source, base=path.parent)


def parse(raw: bytes, *, source: str, base: Path) -> Desired:
    """Validate `raw` YAML bytes; relative key paths are resolved against `base`."""
    try:
        doc = yamlsafe.load(raw)
    except yamlsafe.YamlError as err:
        raise ConfigError(_render_one(source, err.line, str(err)),
                          hint="fix the YAML syntax at that line") from err
    marker = _validated_marker(raw)
    if marker is None or not marker.exists():
        problems = list(_problems(doc))
        if problems:
            msg = "\n".join(p.render(source) for p in problems)
            raise ConfigError(f"{len(problems)} problem(s) in {source}:\n{msg}",
                              hint=problems[0].hint)
        _remember(marker)
    return _freeze(doc.data, source, base, hashlib.sha256(raw).hexdigest())


def _validated_marker(raw: bytes) -> Path | None:
    """Where a fingerprint of (these exact bytes, this schema) is kept once they validated.

    Validation is a pure function of the two, so a file seen before (every boot, every
    config-management run) skips loading jsonschema, which is most of a no-op's cost.
    """
    try:
        schema = SCHEMA_PATH.read_bytes()
    except OSError:
        return None
    key = hashlib.sha256(hashlib.sha256(schema).digest() + raw).hexdigest()
    return VALIDATED_DIR / key


def _remember(marker: Path | None) -> None:
    if marker is None:
        return
    try:
        marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        marker.touch()
    except OSError:
        pass  # a read-only /run only costs the next run a validation


def _render_one(source: str, line: int | None, message: str) -> str:
    return f"{source}:{line}: {message}" if line else f"{source}: {message}"


def _problems(doc: yamlsafe.Document) -> Iterable[Problem]:
    import jsonschema  # noqa: PLC0415 - lazy: only validation needs it

    data = doc.data
    if not isinstance(data, dict):
        yield Problem((), 1, "the file must be a YAML mapping",
                      "start with 'reconciler_format: 1' and 'system: {image: ...}'")
        return
    for clash in ("name", "stages"):
        if clash in data:
            yield Problem((clash,), doc.line_of((clash,)),
                          f"top-level key {clash!r} belongs to yip (cloud-init)",
                          "keep yip stages in another /oem file")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    for err in errors:
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            extras = [k for k in err.instance if k not in err.schema.get("properties", {})]
            if not path and set(extras) <= {"name", "stages"}:
                continue  # already reported as a clash with yip
            path = (*path, extras[0]) if extras else path
        yield Problem(path, doc.line_of(path), err.message, _hint_for(err))
    if errors:
        return
    for key in ("system", "recovery"):
        if key in data:
            try:
                reference.parse(data[key]["image"])
            except reference.ReferenceError as rerr:
                path = (key, "image")
                yield Problem(path, doc.line_of(path), str(rerr),
                              "write it as registry/repository:tag or registry/repository@sha256:…")
    ver = data.get("verification", {})
    if ver.get("policy", POLICY_SIGNED) == POLICY_SIGNED and not ("gpg" in ver or "cosign" in ver):
        yield Problem(("verification",), doc.line_of(("verification",)),
                      "signature verification is on but no public key is configured",
                      "add verification.gpg.keys or verification.cosign.keys, or opt out "
                      f"explicitly with verification.policy: {POLICY_INSECURE}")


def _paths(items: list[str], base: Path) -> tuple[Path, ...]:
    return tuple((base / p) if not Path(p).is_absolute() else Path(p) for p in items)


def _freeze(data: dict[str, Any], source: str, base: Path, fingerprint: str) -> Desired:
    ver = data.get("verification", {})
    reg = data.get("registry", {})
    ret = data.get("retries", {})
    trust = Trust(
        policy=ver.get("policy", POLICY_SIGNED),
        gpg_keys=_paths(ver.get("gpg", {}).get("keys", []), base),
        gpg_lookaside=ver.get("gpg", {}).get("lookaside"),
        cosign_keys=_paths(ver.get("cosign", {}).get("keys", []), base),
        identity=ver.get("identity", "repository"),
    )
    registry = RegistryOptions(
        tls_verify=reg.get("tls_verify", True),
        cert_dir=_paths([reg["cert_dir"]], base)[0] if "cert_dir" in reg else None,
        auth_file=_paths([reg["auth_file"]], base)[0] if "auth_file" in reg else None,
        insecure=tuple(reg.get("insecure", [])),
    )
    defaults = Retries()
    retries = Retries(
        attempts=ret.get("attempts", defaults.attempts),
        initial_wait_s=ret.get("initial_wait_s", defaults.initial_wait_s),
        max_wait_s=ret.get("max_wait_s", defaults.max_wait_s),
    )
    recovery = data.get("recovery")
    return Desired(
        system=reference.parse(data["system"]["image"]),
        source=source,
        recovery=reference.parse(recovery["image"]) if recovery else None,
        trust=trust,
        registry=registry,
        retries=retries,
        cache_dir=Path(data["cache_dir"]) if "cache_dir" in data else None,
        lock_timeout_s=float(data.get("lock_timeout_s", 60.0)),
        fingerprint=fingerprint,
    )
