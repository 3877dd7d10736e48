"""The GPG verdict is decided from `--status-fd` lines alone (no I/O in these tests)."""

from __future__ import annotations

from reconciler.tools.gpg import judge, status_lines

PRIMARY = "08CD26E446E2E95249B7A405E932F44B23E8DD43"
SUBKEY = "57D1D95BBC53BA0EAFF0718CD75B3109B3BAAEAF"
TRUSTED = frozenset({PRIMARY})


def validsig(signer: str = PRIMARY, primary: str = PRIMARY) -> str:
    return f"[GNUPG:] VALIDSIG {signer} 2025-06-23 1750706529 0 4 0 1 8 00 {primary}"


def verdict(*lines: str, trusted: frozenset[str] = TRUSTED) -> tuple[str | None, str]:
    return judge(status_lines("\n".join(lines)), trusted)


GOOD = ("[GNUPG:] PLAINTEXT 62 1750706529 ", "[GNUPG:] NEWSIG",
        "[GNUPG:] GOODSIG E932F44B23E8DD43 skopeo testing key", validsig())


def test_good_signature_by_trusted_key() -> None:
    """NEWSIG + GOODSIG + VALIDSIG by a trusted primary key is accepted."""
    assert verdict(*GOOD) == (PRIMARY, "")


def test_subkey_signature_reports_primary() -> None:
    """A signing subkey's signature is attributed to the primary key in VALIDSIG's last field."""
    assert verdict("[GNUPG:] NEWSIG", "[GNUPG:] GOODSIG D75B3109B3BAAEAF x",
                   validsig(SUBKEY, PRIMARY))[0] == PRIMARY


def test_subkey_fingerprint_alone_is_not_trusted() -> None:
    """Trusting a subkey fingerprint does not make its primary key's signatures acceptable."""
    signer, reason = verdict(*GOOD, trusted=frozenset({SUBKEY}))
    assert signer is None
    assert "not configured" in reason


def test_validsig_without_goodsig_is_refused() -> None:
    """An expired signature gets VALIDSIG too; without GOODSIG it is refused."""
    signer, reason = verdict("[GNUPG:] NEWSIG", "[GNUPG:] EXPSIG E932F44B23E8DD43 k", validsig())
    assert signer is None
    assert "EXPSIG" in reason


def test_revoked_key_is_refused_despite_goodsig_and_validsig() -> None:
    """KEYREVOKED anywhere refuses the signature even if GOODSIG and VALIDSIG are present."""
    signer, reason = verdict(*GOOD, "[GNUPG:] KEYREVOKED")
    assert signer is None
    assert "revoked" in reason


def test_two_signatures_are_refused() -> None:
    """A message carrying two signatures is not a simple-signing signature."""
    signer, reason = verdict(*GOOD, *GOOD[1:])
    assert signer is None
    assert "2 signatures" in reason


def test_unsigned_literal_is_refused() -> None:
    """A literal packet without signature (gpg exit 0 with --decrypt) is refused."""
    signer, reason = verdict("[GNUPG:] PLAINTEXT 62 1458237591 ", "[GNUPG:] NODATA 4")
    assert signer is None
    assert "no signature" in reason


def test_no_status_at_all_is_refused() -> None:
    """Empty status output (gpg crashed or printed nothing) is refused."""
    assert verdict()[0] is None


def test_human_output_cannot_forge_status() -> None:
    """Only lines starting with the status prefix count, not text that merely contains one."""
    forged = [f"gpg: user id {line}" for line in GOOD]
    assert verdict(*forged)[0] is None


def test_missing_public_key_names_the_key_id() -> None:
    """ERRSIG + NO_PUBKEY says which key id signed."""
    signer, reason = verdict("[GNUPG:] NEWSIG", "[GNUPG:] ERRSIG 5F9470E3BC6C3B55 1 8 00 1 9 -",
                             "[GNUPG:] NO_PUBKEY 5F9470E3BC6C3B55")
    assert signer is None
    assert "5F9470E3BC6C3B55" in reason
