"""The desired-state file: schema validation, located errors, examples, hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import config
from reconciler.errors import ConfigError, ExitCode

ROOT = Path(__file__).resolve().parents[1]
GOOD = b"""reconciler_format: 1
system:
  image: 127.0.0.1:5000/cos/system:v1
verification:
  gpg:
    keys: [keys/test.gpg]
"""


def parse(raw: bytes) -> config.Desired:
    return config.parse(raw, source="upgrade.yaml", base=Path("/oem"))


@pytest.mark.parametrize("example", sorted((ROOT / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_example_config_validates(example: Path) -> None:
    """Each file in configs/ is a valid desired-state file."""
    assert config.load(example).system.repository


def test_good_config_is_frozen_with_resolved_key_paths() -> None:
    """Relative key paths are resolved against the config's directory."""
    desired = parse(GOOD)
    assert str(desired.system) == "127.0.0.1:5000/cos/system:v1"
    assert desired.trust.enabled
    assert desired.trust.gpg_keys == (Path("/oem/keys/test.gpg"),)


def test_all_schema_errors_are_reported_at_once_with_lines() -> None:
    """Several problems give one error listing each with line and JSON path."""
    raw = b"reconciler_format: 2\nsystem:\n  image: x\n  tag: 1\nretries: {attempts: 0}\n"
    with pytest.raises(ConfigError) as info:
        parse(raw)
    msg = info.value.message
    assert "upgrade.yaml:1: /reconciler_format" in msg
    assert "upgrade.yaml:4: /system/tag" in msg and "'tag' was unexpected" in msg
    assert "upgrade.yaml:5: /retries/attempts" in msg
    assert info.value.exit_code == ExitCode.CONFIG


def test_malformed_yaml_names_the_line() -> None:
    """A YAML syntax error is one located line."""
    with pytest.raises(ConfigError, match=r"upgrade.yaml:4: malformed YAML.*line 3"):
        parse(b"reconciler_format: 1\nsystem:\n  image: [unclosed\n")


def test_yip_keys_are_refused() -> None:
    """Top-level 'name' and 'stages' clash with yip, which reads every /oem file."""
    with pytest.raises(ConfigError, match="belongs to yip"):
        parse(GOOD + b"stages: {}\n")


def test_verification_without_keys_needs_the_named_opt_out() -> None:
    """Verification on by default: no key configured is an error pointing at the opt-out."""
    with pytest.raises(ConfigError, match="no public key") as info:
        parse(b"reconciler_format: 1\nsystem: {image: reg.example/cos:v1}\n")
    assert config.POLICY_INSECURE in info.value.hint
    desired = parse(b"reconciler_format: 1\nsystem: {image: reg.example/cos:v1}\n"
                    b"verification: {policy: insecure-accept-anything}\n")
    assert not desired.trust.enabled


def test_credentials_in_reference_are_refused() -> None:
    """user:password@registry is refused with a pointer to the auth file."""
    with pytest.raises(ConfigError, match="auth file"):
        parse(GOOD.replace(b"127.0.0.1", b"bob:secret@127.0.0.1"))


def test_alias_bomb_is_refused_quickly() -> None:
    """A billion-laughs document is refused at the first anchor, not expanded."""
    bomb = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n".encode()
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    with pytest.raises(ConfigError, match="anchors"):
        parse(bomb)


def test_huge_file_is_refused_before_parsing() -> None:
    """A multi-megabyte file is refused by size."""
    with pytest.raises(ConfigError, match="limit"):
        parse(b"# " + b"x" * (3 << 20))


def test_non_utf8_is_a_located_config_error() -> None:
    """Bytes that are not UTF-8 are a config error, not a traceback."""
    with pytest.raises(ConfigError, match="UTF-8"):
        parse(b"reconciler_format: 1\nsystem: {image: \xff\xfe}\n")


def test_missing_file_hints_at_examples(tmp_path: Path) -> None:
    """A missing config says so and points at configs/."""
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "upgrade.yaml")


def test_a_validated_file_skips_schema_validation_next_time(monkeypatch, tmp_path) -> None:
    """The same bytes under the same schema are validated once; other bytes are validated."""
    monkeypatch.setattr(config, "VALIDATED_DIR", tmp_path)
    raw = GOOD + b"# fingerprint test\n"
    parse(raw)
    assert len(list(tmp_path.iterdir())) == 1

    def boom(doc: object) -> list[config.Problem]:
        raise AssertionError("validated again")

    monkeypatch.setattr(config, "_problems", boom)
    assert parse(raw).system.tag == "v1"
    with pytest.raises(AssertionError, match="validated again"):
        parse(raw + b"# changed\n")
