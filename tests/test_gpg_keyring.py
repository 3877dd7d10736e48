"""The throw-away keyring: only configured keys, clear errors for bad key files, no leftovers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ConfigError
from reconciler.tools._run import run
from reconciler.tools.gpg import MAX_PAYLOAD_BYTES, Keyring


def agents_for(home: Path) -> list[str]:
    """Running (not zombie) gpg-agent processes serving `home`."""
    out = run(["ps", "-eo", "stat=,args="]).text.splitlines()
    return [line for line in out if "gpg-agent" in line and str(home) in line
            and not line.lstrip().startswith("Z")]


@pytest.fixture
def signing_key(tmp_path: Path) -> Iterator[Any]:
    """A fresh ed25519 key made by the sandbox helper; its agent is stopped afterwards."""
    from reconciler.sandbox import gpg

    key = gpg.make_key(tmp_path / "gpg")
    with gpg.agent_stopped(key):
        yield key


@pytest.fixture
def public_key(signing_key: Any) -> Path:
    """The public half of `signing_key`."""
    path: Path = signing_key.public_key
    return path


def test_fingerprints_are_the_primary_keys(public_key: Path) -> None:
    """The keyring reports the primary fingerprint of each imported key file."""
    listing = run(["gpg", "--batch", "--with-colons", "--show-keys", str(public_key)]).text
    expected = next(line.split(":")[9] for line in listing.splitlines()
                    if line.startswith("fpr:"))
    with Keyring([public_key]) as ring:
        assert ring.fingerprints == {expected}


def test_home_removed_and_no_agent_left(public_key: Path) -> None:
    """After use the temporary home is gone and no gpg-agent serves it."""
    with Keyring([public_key]) as ring:
        home = ring.home
        ring.verify(b"not a signature")
        assert home.is_dir()
    assert not home.exists()
    assert agents_for(home) == []


def test_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    """A configured key that does not exist is a config error naming the file."""
    with pytest.raises(ConfigError, match="does not exist"):
        Keyring([tmp_path / "nope.gpg"])


def test_garbage_key_file_is_a_config_error(tmp_path: Path) -> None:
    """A key file without an OpenPGP public key is a config error with a hint."""
    junk = tmp_path / "junk.gpg"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nnot gpg\n")
    with pytest.raises(ConfigError, match="no usable OpenPGP public key") as caught:
        Keyring([junk])
    assert caught.value.hint


def test_garbage_message_is_refused_not_raised(public_key: Path) -> None:
    """Random bytes give a refusal with a reason, never an exception."""
    with Keyring([public_key]) as ring:
        verdict = ring.verify(b"\xa3\x01 garbage")
    assert verdict.signer is None
    assert verdict.reason


def test_oversized_payload_is_refused(signing_key: Any, tmp_path: Path) -> None:
    """A well-signed message whose payload exceeds the limit (a compression bomb, say) is
    refused: gpg is stopped by the file-size limit before it reports a good signature."""
    payload = tmp_path / "big"
    payload.write_bytes(b"\0" * (MAX_PAYLOAD_BYTES + 4096))
    signed = run(["gpg", "--batch", "--sign", "--output", "-", str(payload)],
                 env=signing_key.env).stdout
    assert len(signed) < MAX_PAYLOAD_BYTES // 100  # it really is a bomb
    with Keyring([signing_key.public_key]) as ring:
        verdict = ring.verify(signed)
    assert verdict.signer is None
    assert "signal" in verdict.reason


def test_signed_message_by_configured_key_is_accepted(signing_key: Any, tmp_path: Path) -> None:
    """A message signed by the configured key is accepted with its payload."""
    signed = run(["gpg", "--batch", "--sign", "--output", "-"], input=b"hello",
                 env=signing_key.env).stdout
    with Keyring([signing_key.public_key]) as ring:
        verdict = ring.verify(signed)
    assert verdict.signer == signing_key.fingerprint
    assert verdict.payload == b"hello"
