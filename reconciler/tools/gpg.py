"""gpg: verify OpenPGP signed messages in a throw-away keyring, judged from status lines only.

gpg's exit status says nothing reliable about a signature: it is 0 for a literal packet with
no signature at all and for a signature by a revoked subkey. So a message is accepted only
when the `--status-fd` lines show exactly one signature with GOODSIG *and* VALIDSIG, none of
the failure codes, and a primary-key fingerprint (last VALIDSIG field) among the imported keys.

The keyring lives in its own temporary GNUPGHOME holding only the configured public keys.
Importing and verifying public keys need no gpg-agent, so none is started (--no-autostart);
close() still stops any daemon of that home before removing it.
Payloads are written under an RLIMIT_FSIZE (prlimit), so a compression bomb cannot fill a disk.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from reconciler.errors import ConfigError, ToolFailed
from reconciler.tools._run import require, run

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
TIMEOUT_S = 60.0
_STATUS = "[GNUPG:] "
_ANY_EXIT = range(-64, 256)  # never decided from: see the module docstring
# Status codes that make a signature unacceptable even when VALIDSIG is also printed
# (gpg prints VALIDSIG next to EXPSIG and REVKEYSIG).
_FAILURES = {
    "BADSIG": "bad signature (BADSIG): the signed data or the signature was altered",
    "EXPSIG": "the signature has expired (EXPSIG)",
    "EXPKEYSIG": "the signing key has expired (EXPKEYSIG)",
    "REVKEYSIG": "the signing key has been revoked (REVKEYSIG)",
    "KEYREVOKED": "the signing key has been revoked (KEYREVOKED)",
    "KEYEXPIRED": "the signing key has expired (KEYEXPIRED)",
    "NO_PUBKEY": "it is signed by key {0}, which is not configured (NO_PUBKEY)",
    "ERRSIG": "the signature could not be checked (ERRSIG)",
    "BADARMOR": "the ASCII armour is damaged (BADARMOR)",
    "UNEXPECTED": "it is not an OpenPGP signed message (UNEXPECTED)",
    "NODATA": "it is not a signed message: no signature found (NODATA)",
    "DECRYPTION_FAILED": "it is an encrypted message, not a signed one",
}


@dataclass(frozen=True)
class Verdict:
    """What gpg made of one message: the accepted primary key (or None and why), the payload."""

    signer: str | None
    reason: str
    payload: bytes
    status: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return self.signer is not None


def status_lines(text: str) -> list[list[str]]:
    """The `[GNUPG:] CODE ARGS...` lines of `text`, split into words (code first)."""
    return [line[len(_STATUS):].split() for line in text.splitlines()
            if line.startswith(_STATUS) and line[len(_STATUS):].strip()]


def judge(lines: Sequence[Sequence[str]], trusted: frozenset[str]) -> tuple[str | None, str]:
    """(primary fingerprint, "") if the status lines show one good signature by a key in
    `trusted` (upper-case fingerprints), else (None, why not)."""
    codes = [line[0] for line in lines]
    signatures = codes.count("NEWSIG")
    for code, reason in _FAILURES.items():
        if code in codes:
            args = next(line[1:] for line in lines if line[0] == code)
            return None, reason.format(args[0] if args else "?")
    if signatures == 0:
        return None, "it carries no signature"
    if signatures > 1:
        return None, f"it carries {signatures} signatures; exactly one is expected"
    valid = [line for line in lines if line[0] == "VALIDSIG"]
    if "GOODSIG" not in codes or len(valid) != 1 or len(valid[0]) < 2:
        return None, "gpg did not report a good, valid signature (no GOODSIG and VALIDSIG)"
    fields = valid[0][1:]
    primary = (fields[9] if len(fields) >= 10 else fields[0]).upper()
    if primary not in trusted:
        return None, f"it is signed by key {primary}, which is not configured"
    return primary, ""


class Keyring:
    """A temporary GNUPGHOME holding exactly the given public keys; use it as a context manager.

    `fingerprints` are the primary-key fingerprints found in the key files.
    """

    def __init__(self, keys: Sequence[Path]) -> None:
        require("gpg")
        require("prlimit")
        self.home = Path(tempfile.mkdtemp(prefix="cos-gpg-"))  # 0700; short path for sockets
        self._count = 0
        try:
            self.fingerprints = frozenset(fpr for key in keys for fpr in self._import(Path(key)))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _gpg(self, *args: str) -> list[str]:
        return ["gpg", "--homedir", str(self.home), "--no-options", "--batch", "--no-tty",
                "--no-autostart", "--no-auto-key-retrieve", "--no-auto-key-locate", *args]

    def _import(self, key: Path) -> list[str]:
        if not key.is_file():
            raise ConfigError(f"GPG public key {key} does not exist",
                              hint="fix verification.gpg.keys in the config")
        result = run(self._gpg("--status-fd", "1", "--import", str(key)), accept=_ANY_EXIT,
                     timeout=TIMEOUT_S)
        imported = [line[2].upper() for line in status_lines(result.text)
                    if line[0] == "IMPORT_OK" and len(line) >= 3]
        if not imported:
            raise ConfigError(f"{key} holds no usable OpenPGP public key",
                              hint="export the key with 'gpg --export KEYID > FILE' "
                                   "(binary or --armor) and point verification.gpg.keys at it")
        return imported

    def verify(self, message: bytes) -> Verdict:
        """Check one OpenPGP signed message; never raises for a bad message, only says why."""
        self._count += 1
        source = self.home / f"message-{self._count}"
        target = self.home / f"payload-{self._count}"
        source.write_bytes(message)
        argv = ["prlimit", f"--fsize={MAX_PAYLOAD_BYTES}", "--",
                *self._gpg("--status-fd", "1", "--output", str(target), "--verify", str(source))]
        try:
            result = run(argv, accept=_ANY_EXIT, timeout=TIMEOUT_S)
        except ToolFailed as err:  # only a timeout gets here
            return Verdict(None, f"gpg did not finish: {err.message}", b"", ())
        finally:
            source.unlink(missing_ok=True)
        lines = status_lines(result.text)
        payload = target.read_bytes() if target.is_file() else b""
        target.unlink(missing_ok=True)
        status = tuple(" ".join(line) for line in lines)
        if result.returncode < 0:
            return Verdict(None, f"gpg was killed by signal {-result.returncode} (payload "
                           f"larger than {MAX_PAYLOAD_BYTES} bytes?)", b"", status)
        signer, reason = judge(lines, self.fingerprints)
        return Verdict(signer, reason, payload if signer else b"", status)

    def close(self) -> None:
        """Stop any daemon gpg started for this home and delete the home; idempotent."""
        if self.home.exists():
            run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], accept=_ANY_EXIT,
                timeout=TIMEOUT_S)
            shutil.rmtree(self.home, ignore_errors=True)
