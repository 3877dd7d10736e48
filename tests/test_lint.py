"""Linters run as tests: ruff and mypy (strict) over the whole project."""

from __future__ import annotations

import sys
from pathlib import Path

from reconciler.tools._run import run

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    """ruff reports no problems in the package, tests and benchmarks."""
    targets = [p for p in ("reconciler", "tests", "bench") if (ROOT / p).exists()]
    res = run([str(BIN / "ruff"), "check", *targets], accept=(0, 1), env={"HOME": "/root"})
    assert res.returncode == 0, res.text


def test_mypy_strict_is_clean() -> None:
    """mypy in strict mode reports no errors."""
    res = run([str(BIN / "mypy"), "--no-error-summary"], accept=(0, 1, 2))
    assert res.returncode == 0, res.text + res.stderr.decode()


def test_only_the_runner_imports_subprocess() -> None:
    """Exactly one module of the package starts processes."""
    users = [p.relative_to(ROOT).as_posix() for p in (ROOT / "reconciler").rglob("*.py")
             if "import subprocess" in p.read_text()]
    assert users == ["reconciler/tools/_run.py"]
