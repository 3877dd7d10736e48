"""Hostile configs: whatever bytes or structure the config loader is fed, it either returns a
Desired or raises ConfigError naming the file (and the line, where there is one); the real
`reconcile validate` refuses nasty files fast, with one error line and no traceback."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import config
from reconciler.errors import ConfigError, ExitCode
from reconciler.tools._run import run
from tests.conftest import RECONCILE

SOURCE = "/oem/fuzz.yaml"
BASE = Path("/oem")
FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# Pieces that push YAML parsers and our schema into their corners.
FRAGMENTS = [
    "reconciler_format: 1\n", "system:\n", "  image: ", "recovery: {image: ", "}", "{", "[",
    "]", ": ", "- ", "\n", "  ", "\t", "&a ", "*a", "<<: ", "? ", "!!binary ",
    "!!python/object:os.system ", "!!str ", "!!float ", "!custom ", "'", '"', "#", "|", ">-",
    "%YAML 1.1\n", "%TAG ! x\n",
    "---\n", "...\n", "\x00", "\ufeff", "\u2028", "1e400", ".nan", "-.inf", "~", "null",
    "2001-12-14", "0o17", "0x1F", "yes", "registry.example.com/cos/system:v1",
    "user:pw@registry.example.com/r:1", "sha256:", "@sha256:" + "a" * 64, "verification:\n",
    "  policy: insecure-accept-anything\n", "  gpg: {keys: [k.gpg]}\n", "  identity: exact\n",
    "registry:\n", "  insecure: [", "retries: {attempts: ", "lock_timeout_s: ", "name: x\n",
    "stages: {}\n", "cache_dir: ", "\\x", "\\u0000", "9" * 40, "2001-13-45", "!!timestamp ",
    "!!int ", "!!bool ", "!!set ", "!!omap ", "\r", "\x1e", "\x85", "\x01",
]

SCHEMA_KEYS = ["reconciler_format", "system", "recovery", "verification", "registry",
               "retries", "cache_dir", "lock_timeout_s", "image", "gpg", "cosign", "keys",
               "lookaside", "identity", "policy", "tls_verify", "cert_dir", "auth_file",
               "insecure", "attempts", "initial_wait_s", "max_wait_s", "name", "stages"]

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.text(max_size=40), st.sampled_from(["registry.example.com/cos/system:v1",
                                           "signed", "insecure-accept-anything", "exact",
                                           "file:///sigs", "x" * 600, "a@b/c", ""]))
KEYS = st.one_of(st.sampled_from(SCHEMA_KEYS), st.text(max_size=12))
STRUCTURES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=30)
NEAR_VALID = st.fixed_dictionaries(
    {"reconciler_format": st.one_of(st.just(1), SCALARS),
     "system": st.one_of(st.fixed_dictionaries({"image": SCALARS}), STRUCTURES)},
    optional={"verification": STRUCTURES, "registry": STRUCTURES, "retries": STRUCTURES,
              "recovery": STRUCTURES, "lock_timeout_s": SCALARS, "cache_dir": SCALARS})


def assert_located(err: ConfigError) -> None:
    """The message names the file; each schema problem also names its line and JSON path."""
    assert err.hint
    lines = err.message.splitlines()
    if lines[0].endswith(f"problem(s) in {SOURCE}:"):
        for line in lines[1:]:
            assert re.match(rf"{re.escape(SOURCE)}:\d+: /", line), line
    else:
        assert len(lines) == 1, err.message
        assert lines[0].startswith(SOURCE), err.message


def load(raw: bytes) -> None:
    """Parse `raw`; only a Desired or a located ConfigError may come out."""
    try:
        desired = config.parse(raw, source=SOURCE, base=BASE)
    except ConfigError as err:
        assert_located(err)
        return
    assert isinstance(desired, config.Desired)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(raw: bytes) -> None:
    """Arbitrary bytes never escape as anything but a located ConfigError."""
    load(raw)


@FUZZ
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40))
def test_yamlish_text(pieces: list[str]) -> None:
    """Text stitched from YAML syntax, tags, anchors and schema keys never escapes."""
    load("".join(pieces).encode("utf-8", "surrogatepass"))


@FUZZ
@given(STRUCTURES)
def test_random_structures(data: Any) -> None:
    """Any structure dumped as YAML never escapes."""
    load(yaml.safe_dump(data, allow_unicode=True).encode())


@FUZZ
@given(NEAR_VALID)
def test_near_valid_documents(data: dict[str, Any]) -> None:
    """Documents shaped like a real config, with random values, never escape."""
    load(yaml.safe_dump(data, allow_unicode=True).encode())


def test_problem_lines_point_at_the_value() -> None:
    """A schema problem names the line holding the bad value."""
    raw = b"reconciler_format: 1\nsystem:\n  image: r.example.com/a:1\nretries:\n  attempts: x\n"
    with pytest.raises(ConfigError) as caught:
        config.parse(raw, source=SOURCE, base=BASE)
    assert f"{SOURCE}:5: /retries/attempts:" in caught.value.message


# -- the real CLI on nasty files ----------------------------------------------------------

ALIAS_BOMB = (b"reconciler_format: 1\n"
              b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
              + b"".join(f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n".encode()
                         for p, c in zip("abcdefgh", "bcdefghi", strict=True))
              + b"system: {image: *i}\n")
NASTY = {
    "alias-bomb": (ALIAS_BOMB, "anchors"),
    "five-megabytes": (b"reconciler_format: 1\n#" + b"x" * (5 * 1024 * 1024) + b"\n",
                       "the limit is"),
    "not-utf8": (b"reconciler_format: 1\nsystem:\n  image: \xff\xfe\xfd\n", "not valid UTF-8"),
    "credentials-in-reference": (
        b"reconciler_format: 1\nsystem:\n  image: 'alice:hunter2@registry.example.com/cos/s:1'"
        b"\nverification: {policy: insecure-accept-anything}\n", "registry.auth_file"),
}


@pytest.mark.parametrize("name", sorted(NASTY))
def test_validate_refuses_nasty_file(name: str, tmp_path: Path) -> None:
    """`reconcile validate` on a nasty file: exit 3, one error line naming the file, a hint,
    no traceback, no secret echoed, and well under a second."""
    raw, expected = NASTY[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(raw)
    started = time.monotonic()
    res = run([RECONCILE, "validate", str(path)], accept=range(256), timeout=30)
    elapsed = time.monotonic() - started
    stderr = res.stderr.decode()
    assert res.returncode == ExitCode.CONFIG, stderr
    assert "Traceback" not in stderr
    assert "hunter2" not in stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("reconcile: error:")]
    assert len(errors) == 1, stderr
    assert str(path) in stderr
    assert expected in stderr
    assert "hint:" in stderr
    assert elapsed < 0.8, f"validate took {elapsed:.2f} s"
