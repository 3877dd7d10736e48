"""Throw-away GnuPG signing keys (own GNUPGHOME each) for signed-image tests."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ReconcileError
from reconciler.tools._run import run

# gpg-agent puts its sockets in GNUPGHOME (there is no /run/user/UID here); a Unix socket
# path must fit in 107 bytes, and the longest name is "S.gpg-agent.browser".
_MAX_HOME_LEN = 107 - len("/S.gpg-agent.browser")


@dataclass(frozen=True)
class GpgKey:
    """An unprotected signing key in its own keyring, with its ASCII-armoured public half."""

    home: Path
    fingerprint: str
    public_key: Path

    @property
    def env(self) -> dict[str, str]:
        """Environment that points gpg (and skopeo's gpgme) at this keyring."""
        return {"GNUPGHOME": str(self.home)}


def _new_home(workdir: Path) -> Path:
    """A fresh 0700 GNUPGHOME in `workdir`, or in the temp dir if the path would be too long."""
    home = Path(tempfile.mkdtemp(prefix="gnupg-", dir=workdir))
    if len(str(home)) <= _MAX_HOME_LEN:
        return home
    home.rmdir()
    home = Path(tempfile.mkdtemp(prefix="sbx-gnupg-"))
    (workdir / "gnupg-home").write_text(f"{home}\n")

    def _cleanup() -> None:
        run(["gpgconf", "--homedir", str(home), "--kill", "all"], accept=range(256))
        shutil.rmtree(home, ignore_errors=True)

    atexit.register(_cleanup)
    return home


def make_key(workdir: Path, name: str = "cos-reconciler test") -> GpgKey:
    """Generate an ed25519 signing key (no passphrase) in a new keyring under `workdir`.

    skopeo 1.9's gpgme verifies ed25519 signatures, so the fast key type is used. The
    gpg-agent started for key generation is stopped before returning; signing restarts it,
    so call `stop_agent` (or use `agent_stopped`) when done signing.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    home = _new_home(workdir)
    os.chmod(home, 0o700)
    env = {"GNUPGHOME": str(home)}
    try:
        run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
             f"{name} <test@example.invalid>", "ed25519", "sign", "never"], env=env)
        listing = run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env).text
        fingerprints = [line.split(":")[9] for line in listing.splitlines()
                        if line.startswith("fpr:")]
        if not fingerprints:
            raise ReconcileError(f"gpg generated no key in {home}")
        fingerprint = fingerprints[0]
        public_key = workdir / f"{home.name}.pub.asc"
        armored = run(["gpg", "--batch", "--armor", "--export", fingerprint], env=env).stdout
        public_key.write_bytes(armored)
    finally:
        run(["gpgconf", "--homedir", str(home), "--kill", "all"], accept=range(256))
    return GpgKey(home=home, fingerprint=fingerprint, public_key=public_key)


def stop_agent(key: GpgKey) -> None:
    """Stop the gpg-agent (and any other daemon) serving this key's keyring, if running."""
    run(["gpgconf", "--homedir", str(key.home), "--kill", "all"], accept=range(256))


@contextlib.contextmanager
def agent_stopped(key: GpgKey) -> Iterator[GpgKey]:
    """Use `key` for the `with` block; its gpg-agent is stopped afterwards, even on failure."""
    try:
        yield key
    finally:
        stop_agent(key)
