"""Generate the containers signature policy (policy.json) and registries.d for one fetch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from reconciler.config import Trust
from reconciler.errors import ConfigError
from reconciler.reference import ImageRef


def identity_requirement(trust: Trust, image: ImageRef, *,
                         explicit: bool = False) -> dict[str, str]:
    """The policy's signedIdentity for the configured identity mode. `explicit` names the
    repository instead of matching the source's own reference (a `dir:` source has none)."""
    if trust.identity == "repository":
        if explicit:
            return {"type": "exactRepository", "dockerRepository": image.repository}
        return {"type": "matchRepository"}
    if trust.identity == "exact":
        if not image.tag:
            raise ConfigError(
                f"verification.identity 'exact' needs a tag in {image}",
                hint="give the image as repository:tag, or name the signed reference "
                     "explicitly in verification.identity")
        return {"type": "exactReference", "dockerReference": f"{image.repository}:{image.tag}"}
    return {"type": "exactReference", "dockerReference": trust.identity}


def write_policy(workdir: Path, trust: Trust, image: ImageRef, *,
                 transport: Literal["docker", "dir"] = "docker") -> tuple[Path, Path | None]:
    """Write policy.json (and registries.d when a lookaside is configured) under `workdir`.

    The signature requirement applies to `image` read from the `docker` transport, or, with
    transport="dir", to any `dir:` source (signature-N files beside its manifest.json),
    which must then carry a signature for `image`'s identity.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    requirements: list[dict[str, Any]]
    if not trust.enabled or not trust.gpg_keys:
        # No GPG keys: skopeo does not check signatures (cosign is checked before the fetch).
        requirements = [{"type": "insecureAcceptAnything"}]
    else:
        for key in trust.gpg_keys:
            if not key.is_file():
                raise ConfigError(f"GPG public key {key} does not exist",
                                  hint="fix verification.gpg.keys in the config")
        requirements = [{
            "type": "signedBy",
            "keyType": "GPGKeys",
            "keyPaths": [str(k) for k in trust.gpg_keys],
            "signedIdentity": identity_requirement(trust, image, explicit=transport == "dir"),
        }]
    accept = [{"type": "insecureAcceptAnything"}]
    transports: dict[str, dict[str, list[dict[str, Any]]]] = {
        "oci": {"": accept}, "dir": {"": accept}}
    transports[transport] = {image.repository if transport == "docker" else "": requirements}
    policy = {"default": [{"type": "reject"}], "transports": transports}
    policy_path = workdir / "policy.json"
    policy_path.write_text(json.dumps(policy, indent=2))
    registries_d = None
    if trust.enabled and trust.gpg_lookaside:
        registries_d = workdir / "registries.d"
        registries_d.mkdir(exist_ok=True)
        (registries_d / "cos-reconciler.yaml").write_text(json.dumps(
            {"docker": {image.repository: {"lookaside": trust.gpg_lookaside}}}))
    return policy_path, registries_d
