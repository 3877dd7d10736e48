"""The one exception hierarchy: every failure carries an exit code, a hint and retryability."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (docs/exit-codes.md)."""

    OK = 0
    FAILURE = 1
    CHANGED = 2
    CONFIG = 3
    VERIFICATION = 4
    TRANSIENT = 5
    LOCK_HELD = 6
    SYSTEM = 7
    NO_SPACE = 8
    USAGE = 64


class ReconcileError(Exception):
    """Base error: a message saying what is wrong and a hint saying what to do."""

    exit_code: ExitCode = ExitCode.FAILURE
    retryable: bool = False

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(ReconcileError):
    """The command line is wrong."""

    exit_code = ExitCode.USAGE


class ConfigError(ReconcileError):
    """The desired-state file cannot be read or does not validate."""

    exit_code = ExitCode.CONFIG


class VerificationError(ReconcileError):
    """An image's signatures or digest do not satisfy the trust settings."""

    exit_code = ExitCode.VERIFICATION


class TransientError(ReconcileError):
    """A failure that may go away by itself (network, registry 5xx); retried, bounded."""

    exit_code = ExitCode.TRANSIENT
    retryable = True


class ImageNotFound(ReconcileError):
    """The registry answered that the image or tag does not exist (not retried)."""


class RegistryAccessDenied(ReconcileError):
    """The registry refused credentials or TLS failed (not retried)."""


class LockHeld(ReconcileError):
    """Another reconcile run holds the lock."""

    exit_code = ExitCode.LOCK_HELD


class SystemLayoutError(ReconcileError):
    """The disk does not look like a cOS system (missing or duplicate labels, bad slots)."""

    exit_code = ExitCode.SYSTEM


class NoSpaceError(ReconcileError):
    """The target partition cannot hold the new image."""

    exit_code = ExitCode.NO_SPACE


class HostileImageError(VerificationError):
    """A layer tries to do something an OS image must not (escape the root, lie about sizes)."""


class ToolFailed(ReconcileError):
    """An external tool exited with an unexpected status."""

    def __init__(self, message: str, *, argv: list[str], returncode: int, stderr: str,
                 hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
