"""Decide whether a signed docker-reference is acceptable for the image being verified.

Two modes, as in containers/image's policy.json:
* repository (`matchRepository`): the signed reference's repository must equal
  `IdentityRule.repository`; its tag or digest, if any, is ignored. cosign signs the bare
  repository; containers/image's own signer signs "repo:tag"; both are accepted.
* exact (`matchExact`), when `IdentityRule.exact` is set: the signed reference must equal it,
  and both must carry a tag or digest, so a cosign (repository-only) signature never matches.
References are normalised first ("busybox" == "docker.io/library/busybox").
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.errors import ConfigError
from reconciler.trust.reference import DockerReference, parse_reference


@dataclass(frozen=True)
class IdentityRule:
    """Which signed identity is acceptable: a repository, or one exact reference.

    `repository` has no tag or digest. When `exact` is set, only `exact` is compared.
    """

    repository: str
    exact: str | None = None


def _parse_rule_value(text: str, what: str) -> DockerReference:
    try:
        return parse_reference(text)
    except ValueError as err:
        raise ConfigError(
            f"trusted identity {what} {text!r} is not a valid image reference: {err}",
            hint="write it like registry.example.com:5000/org/repo",
        ) from err


def check_rule(rule: IdentityRule) -> None:
    """Raise ConfigError when the rule itself cannot be used for matching."""
    if rule.exact is not None:
        _parse_rule_value(rule.exact, "reference")
        return
    wanted = _parse_rule_value(rule.repository, "repository")
    if not wanted.name_only:
        raise ConfigError(
            f"trusted identity repository {rule.repository!r} has a tag or digest",
            hint="give the repository only (drop ':tag' / '@digest'), "
            "or use an exact reference instead",
        )


def identity_mismatch(rule: IdentityRule, signed: str) -> str | None:
    """None if `signed` satisfies `rule`, else why not (for the user). Call check_rule first."""
    try:
        got = parse_reference(signed)
    except ValueError as err:
        return f"signed identity {signed!r} is not a valid image reference ({err})"
    if rule.exact is not None:
        wanted = parse_reference(rule.exact)
        if wanted.name_only or got.name_only:
            return (
                f"identity {signed} does not match exact reference {rule.exact} "
                "(an exact match needs a tag or digest on both sides)"
            )
        if str(got) != str(wanted):
            return f"identity {signed} does not match exact reference {rule.exact}"
        return None
    if got.name != parse_reference(rule.repository).name:
        return f"identity {signed} does not match repository {rule.repository}"
    return None
