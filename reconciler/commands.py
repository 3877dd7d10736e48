"""The verbs behind the CLI: each builds the desired state, runs the engine, prints a document."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from reconciler import config, logs, reference
from reconciler.cli import emit
from reconciler.errors import ConfigError, ExitCode, ReconcileError

log = logs.get_logger("reconciler")


def replace_trust(desired: config.Desired, **changes: Any) -> config.Desired:
    """`desired` with its trust settings changed."""
    return dataclasses.replace(desired, trust=dataclasses.replace(desired.trust, **changes))


def _load(path: Path) -> config.Desired:
    desired = config.load(path)
    _warn_if_unverified(desired)
    return desired


def _warn_if_unverified(desired: config.Desired) -> None:
    if not desired.trust.enabled:
        log.warning("signature verification is DISABLED", source=desired.source,
                    opt_out=config.POLICY_INSECURE)


def _apply_and_report(desired: config.Desired, args: argparse.Namespace) -> int:
    from reconciler import apply  # noqa: PLC0415 - not needed for validate/--help

    outcome = apply.apply(desired, host_root=Path(args.host_root), disk=args.disk)
    if args.json:
        emit({"changed": outcome.applied, "plan": outcome.plan.to_json()}, as_json=True)
    elif outcome.applied:
        emit(outcome.plan.render() + f"\nApplied {len(outcome.plan.steps)} step(s).",
             as_json=False)
    else:
        emit(outcome.plan.render(), as_json=False)
    if outcome.applied and args.detailed_exitcode:
        return int(ExitCode.CHANGED)
    return int(ExitCode.OK)


def apply(args: argparse.Namespace, config_path: Path) -> int:
    """Converge to the config."""
    return _apply_and_report(_load(config_path), args)


def plan(args: argparse.Namespace, config_path: Path) -> int:
    """Print what apply would do."""
    from reconciler import apply as engine  # noqa: PLC0415

    desired = _load(config_path)
    _, the_plan = engine.compute(desired, host_root=Path(args.host_root), disk=args.disk)
    emit(the_plan.to_json() if args.json else the_plan.render(), as_json=args.json)
    if the_plan.changes and args.detailed_exitcode:
        return int(ExitCode.CHANGED)
    return int(ExitCode.OK)


def validate(args: argparse.Namespace, config_path: Path) -> int:
    """Check a config file and say so."""
    path = Path(args.file) if args.file else config_path
    desired = _load(path)
    emit(f"{path}: valid (system image {desired.system}, verification "
         f"{'on' if desired.trust.enabled else 'DISABLED'})", as_json=False)
    return int(ExitCode.OK)


def upgrade(args: argparse.Namespace, config_path: Path) -> int:
    """`elemental upgrade --docker-image IMG` through the same engine."""
    try:
        image = reference.parse(args.docker_image)
    except reference.ReferenceError as err:
        raise ConfigError(f"--docker-image: {err}",
                          hint="write it as registry/repository:tag") from err
    if config_path.is_file():
        desired = config.load(config_path)
        desired = _with_images(desired, image, args.recovery)
    else:
        desired = config.Desired(system=image, source="command line",
                                 recovery=image if args.recovery else None)
    if args.gpg_key or args.cosign_key:
        desired = replace_trust(desired, policy=config.POLICY_SIGNED,
                                gpg_keys=tuple(Path(k) for k in args.gpg_key),
                                cosign_keys=tuple(Path(k) for k in args.cosign_key))
    if args.no_verify:
        desired = replace_trust(desired, policy=config.POLICY_INSECURE)
    if args.tls_verify is not None:
        desired = dataclasses.replace(desired, registry=dataclasses.replace(
            desired.registry, tls_verify=args.tls_verify))
    if desired.trust.enabled and not (desired.trust.gpg_keys or desired.trust.cosign_keys):
        raise ConfigError(
            "signature verification is on by default but no public key is configured",
            hint="pass --gpg-key KEY or --cosign-key KEY, configure verification in "
                 f"{config_path}, or pass --no-verify to install an unverified image")
    _warn_if_unverified(desired)
    return _apply_and_report(desired, args)


def _with_images(desired: config.Desired, image: reference.ImageRef,
                 recovery: bool) -> config.Desired:
    return dataclasses.replace(desired, system=image,
                               recovery=image if recovery else desired.recovery,
                               source=f"{desired.source} + --docker-image")


def status(args: argparse.Namespace, config_path: Path) -> int:
    """Slots, booted slot, and whether the system matches the config."""
    from reconciler import probe, resolve  # noqa: PLC0415
    from reconciler.plan import verification_summary  # noqa: PLC0415

    observed = probe.observe(host_root=Path(args.host_root), disk=args.disk)
    doc: dict[str, Any] = {
        "format_version": 1,
        "boot_mode": observed.boot_mode,
        "partitions": dict(observed.partitions),
        "slots": {name: slot.to_json() for name, slot in observed.slots.items()},
        "interrupted_run_leftovers": list(observed.leftovers),
        "desired": None,
        "converged": None,
    }
    desired = None
    if config_path.is_file():
        try:
            desired = _load(config_path)
        except ConfigError as err:
            doc["config_error"] = err.message
    if desired is not None:
        doc["verification"] = verification_summary(desired)
        doc["insecure_registries"] = list(desired.registry.insecure)
        try:
            digest = resolve.digest_of(desired.system, desired)
        except ReconcileError as err:
            digest = None
            doc["desired_error"] = err.message
        doc["desired"] = {"image": str(desired.system), "digest": digest,
                          "source": desired.source}
        active = observed.slots.get("active")
        if digest is not None:
            doc["converged"] = bool(active and active.digest == digest)
    emit(doc if args.json else _render_status(doc), as_json=args.json)
    return int(ExitCode.OK)


def _render_status(doc: dict[str, Any]) -> str:
    lines = [f"booted from: {doc['boot_mode']}"]
    for name, slot in doc["slots"].items():
        if not slot["present"]:
            lines.append(f"  {name:<9} (absent)")
            continue
        lines.append(f"  {name:<9} {slot['image'] or '(not in state record)'}")
        lines.append(f"  {'':<9} digest {slot['digest'] or '-'}  label {slot['label']}  "
                     f"uuid {slot['fs_uuid']}")
        lines.append(f"  {'':<9} installed {slot['date'] or '-'}  verified "
                     f"{slot['verified'] or '-'}")
    if doc["interrupted_run_leftovers"]:
        lines.append("leftovers of an interrupted run: "
                     + ", ".join(doc["interrupted_run_leftovers"]))
    if "config_error" in doc:
        lines.append(f"config error: {doc['config_error']}")
    desired = doc.get("desired")
    if desired:
        lines.append(f"desired:  {desired['image']} ({desired['digest'] or 'unresolved'})")
        lines.append(f"verification: {doc['verification']}")
        if doc["insecure_registries"]:
            lines.append("plain-HTTP registries: " + ", ".join(doc["insecure_registries"]))
        state = {True: "yes", False: "no (run 'reconcile')", None: "unknown"}[doc["converged"]]
        lines.append(f"converged: {state}")
    return "\n".join(lines)


def verify(args: argparse.Namespace, config_path: Path) -> int:
    """Check an image's signatures against the config's trust settings (issue: trust)."""
    from reconciler.steps import verify as verifier  # noqa: PLC0415

    desired = _load(config_path)
    result = verifier.verify_image(desired, args.image)
    emit(result if args.json else "\n".join(
        f"{k}: " + (", ".join(f"{ik} {iv}" for ik, iv in v.items()) if isinstance(v, dict)
                    else str(v)) for k, v in result.items()), as_json=args.json)
    return int(ExitCode.OK)
