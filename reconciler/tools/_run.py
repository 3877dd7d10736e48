"""The only place that starts external processes.

Safe defaults: argv lists, stdin from /dev/null, a fixed C.UTF-8 locale, accepted exit codes
named explicitly; a failure is logged as a copy-pasteable command line and raised as ToolFailed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from reconciler import logs
from reconciler.errors import SystemLayoutError, ToolFailed

log = logs.get_logger(__name__)

_BASE_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


@dataclass(frozen=True)
class Result:
    """What a finished command left behind."""

    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "GNUPGHOME")}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.update(_BASE_ENV)
    if extra:
        env.update(extra)
    return env


def require(tool: str) -> str:
    """Path of `tool`, or a SystemLayoutError saying how to install it."""
    path = shutil.which(tool, path=_env(None)["PATH"])
    if path is None:
        raise SystemLayoutError(
            f"required tool {tool!r} is not installed",
            hint="run 'make deps' (or install it with apt-get) and try again",
        )
    return path


def run(
    argv: Sequence[str],
    *,
    accept: Sequence[int] = (0,),
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdout: IO[bytes] | int | None = None,
    hint: str = "",
) -> Result:
    """Run `argv` to completion; raise ToolFailed unless its exit status is in `accept`."""
    args = [str(a) for a in argv]
    log.debug("run", cmd=shlex.join(args))
    try:
        proc = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(env),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as err:
        raise SystemLayoutError(
            f"required tool {args[0]!r} is not installed",
            hint="run 'make deps' (or install it with apt-get) and try again",
        ) from err
    except subprocess.TimeoutExpired as err:
        raise ToolFailed(
            f"{args[0]} did not finish within {timeout} s",
            argv=args, returncode=-1, stderr="", hint=hint,
        ) from err
    out = proc.stdout if isinstance(proc.stdout, bytes) else b""
    result = Result(args, proc.returncode, out, proc.stderr or b"")
    if proc.returncode not in accept:
        raise failure(result, hint=hint)
    return result


def failure(result: Result, *, hint: str = "") -> ToolFailed:
    """The ToolFailed for a finished command, logged as a line one can paste into a shell."""
    err = result.stderr.decode("utf-8", "replace").strip()
    log.error("command failed", cmd=shlex.join(result.argv), returncode=result.returncode,
              stderr=err[-2000:])
    last = err.splitlines()[-1] if err else "(no error output)"
    return ToolFailed(
        f"{os.path.basename(result.argv[0])} failed (exit {result.returncode}): {last}",
        argv=result.argv, returncode=result.returncode, stderr=err, hint=hint,
    )


class Stream:
    """A running command whose stdout is read as a stream (e.g. a decompressor)."""

    def __init__(self, argv: Sequence[str], *, stdin: IO[bytes] | int | None = None) -> None:
        self.argv = [str(a) for a in argv]
        log.debug("stream", cmd=shlex.join(self.argv))
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_env(None),
            )
        except FileNotFoundError as err:
            raise SystemLayoutError(
                f"required tool {self.argv[0]!r} is not installed",
                hint="run 'make deps' (or install it with apt-get) and try again",
            ) from err
        assert self._proc.stdout is not None
        self.stdout: IO[bytes] = self._proc.stdout

    def close(self, *, check: bool = True) -> None:
        """Wait for the command; raise ToolFailed if it failed and `check` is set."""
        self.stdout.close()
        stderr = self._proc.stderr.read() if self._proc.stderr else b""
        if self._proc.stderr:
            self._proc.stderr.close()
        code = self._proc.wait()
        if check and code != 0:
            raise failure(Result(self.argv, code, b"", stderr))

    def kill(self) -> None:
        """Stop the command at once (used when the reader gives up early)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self.close(check=False)


class Background:
    """A long-running service (e.g. a test registry) with its output sent to a log file."""

    def __init__(self, argv: Sequence[str], *, log_path: str | os.PathLike[str],
                 env: Mapping[str, str] | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = os.fspath(log_path)
        log.debug("background", cmd=shlex.join(self.argv))
        with open(self.log_path, "ab") as sink:
            try:
                self._proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                    env=_env(env), start_new_session=True,
                )
            except FileNotFoundError as err:
                raise SystemLayoutError(
                    f"required tool {self.argv[0]!r} is not installed",
                    hint="run 'make deps' (or install it with apt-get) and try again",
                ) from err

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the service and wait for it; kill it if it does not stop in time."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
