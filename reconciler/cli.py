"""The `reconcile` command line: verbs, documents on stdout, one error line and an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from reconciler import config, logs
from reconciler.errors import ExitCode, ReconcileError, UsageError

log = logs.get_logger("reconciler")
VERBS = ("apply", "plan", "status", "validate", "upgrade", "verify")


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 64) instead of exiting with 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", hint=f"see '{self.prog} --help'")


def _globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--config", default=default(None),
                        help=f"desired-state file (default: HOST_ROOT{config.DEFAULT_CONFIG})")
    parser.add_argument("--host-root", default=default(os.environ.get("RECONCILE_HOST_ROOT", "/")),
                        help="where the host's / is mounted (e.g. /host in a Kubernetes pod)")
    parser.add_argument("--disk", default=default(os.environ.get("RECONCILE_DISK")),
                        help="only look for COS_* labels on this disk and its partitions")
    parser.add_argument("--debug", action="store_true", default=default(False),
                        help="verbose logs")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconcile", description="Converge a cOS/Elemental system to the "
                     "system image declared in its config file.")
    _globals(parser, top=True)
    sub = parser.add_subparsers(dest="verb", parser_class=_Parser)
    p_apply = sub.add_parser("apply", help="converge the system (the default verb)")
    p_plan = sub.add_parser("plan", help="show what apply would do, changing nothing")
    for p in (p_apply, p_plan):
        p.add_argument("--json", action="store_true", help="print the plan as JSON")
        p.add_argument("--detailed-exitcode", action="store_true",
                       help="exit 2 when there are (or were) changes, 0 when none")
    p_status = sub.add_parser("status", help="show slots, booted slot and convergence")
    p_status.add_argument("--json", action="store_true")
    p_validate = sub.add_parser("validate", help="check a config file")
    p_validate.add_argument("file", nargs="?")
    p_upgrade = sub.add_parser("upgrade", help="one-shot upgrade, like 'elemental upgrade'")
    p_upgrade.add_argument("--docker-image", required=True, metavar="IMG",
                           help="image to install (registry/repo:tag or @sha256:...)")
    p_upgrade.add_argument("--no-verify", action="store_true",
                           help="do not check signatures (logged, shown in status)")
    p_upgrade.add_argument("--recovery", action="store_true",
                           help="also upgrade the recovery image to IMG")
    p_upgrade.add_argument("--tls-verify", type=_boolean, default=None, metavar="BOOL",
                           help="require HTTPS and verify certificates (default: true)")
    p_upgrade.add_argument("--gpg-key", action="append", default=[], metavar="KEY")
    p_upgrade.add_argument("--cosign-key", action="append", default=[], metavar="KEY")
    p_upgrade.add_argument("--json", action="store_true")
    p_upgrade.add_argument("--detailed-exitcode", action="store_true")
    p_verify = sub.add_parser("verify", help="check an image's signatures, install nothing")
    p_verify.add_argument("image")
    p_verify.add_argument("--json", action="store_true")
    for p in (p_apply, p_plan, p_status, p_validate, p_upgrade, p_verify):
        _globals(p, top=False)
    return parser


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _argv_with_verb(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if not any(a in VERBS for a in args) and not any(a in ("-h", "--help") for a in args):
        args.insert(0, "apply")
    return args


def _config_path(args: argparse.Namespace) -> Path:
    if args.config:
        return Path(args.config)
    return Path(args.host_root) / config.DEFAULT_CONFIG.lstrip("/")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    raw = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in raw
    logs.configure(debug=debug)
    try:
        args = build_parser().parse_args(_argv_with_verb(raw))
        return _dispatch(args)
    except ReconcileError as err:
        _report(err)
        return int(err.exit_code)
    except KeyboardInterrupt:
        print("reconcile: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not a user mistake
        if debug:
            log.exception("internal error")
        print(f"reconcile: internal error: {type(err).__name__}: {err}\n"
              "  hint: rerun with --debug and report it; the slots were not switched unless "
              "the log says 'promote'", file=sys.stderr)
        return int(ExitCode.FAILURE)


def _report(err: ReconcileError) -> None:
    log.debug("failed", error=err.message, exit_code=int(err.exit_code))
    print(f"reconcile: error: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"  hint: {err.hint}", file=sys.stderr)


def _dispatch(args: argparse.Namespace) -> int:
    from reconciler import commands  # noqa: PLC0415 - keeps `--help` and usage errors cheap

    verb = args.verb or "apply"
    handler = getattr(commands, verb)
    result: int = handler(args, _config_path(args))
    return result


def emit(document: dict[str, Any] | str, *, as_json: bool) -> None:
    """Print a document to stdout."""
    if as_json:
        print(json.dumps(document, indent=2, sort_keys=False, default=str))
    else:
        print(document)
