"""Bounded retries for transient failures only (tenacity), with an injectable wait strategy."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from reconciler import logs
from reconciler.config import Retries
from reconciler.errors import ReconcileError, TransientError

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")
log = logs.get_logger(__name__)

# Tests replace this with tenacity.wait_none() so they never sleep.
WAIT_OVERRIDE: tenacity.wait.wait_base | None = None


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ReconcileError) and exc.retryable


def with_retries(what: str, fn: Callable[[], T], bounds: Retries) -> T:
    """Call `fn`; retry transient errors with exponential backoff, at most `bounds.attempts`."""
    import tenacity  # noqa: PLC0415 - lazy: a digest-pinned no-op never retries anything

    wait = WAIT_OVERRIDE or tenacity.wait_exponential(
        multiplier=bounds.initial_wait_s, max=bounds.max_wait_s)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("transient failure, retrying", what=what, attempt=state.attempt_number,
                    of=bounds.attempts, error=str(exc))

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(bounds.attempts),
        wait=wait,
        retry=tenacity.retry_if_exception(_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn)
    except TransientError as err:
        raise TransientError(
            f"{err.message} (gave up after {bounds.attempts} attempts)", hint=err.hint) from err
