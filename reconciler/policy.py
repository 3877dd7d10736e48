"""Generate the containers signature policy (policy.json) and registries.d for one fetch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.config import Trust
from reconciler.errors import ConfigError
from reconciler.reference import ImageRef


def identity_requirement(trust: Trust, image: ImageRef) -> dict[str, str]:
    """The policy's signedIdentity for the configured identity mode."""
    if trust.identity == "repository":
        return {"type": "matchRepository"}
    if trust.identity == "exact":
        if not image.tag:
            raise ConfigError(
                f"verification.identity 'exact' needs a tag in {image}",
                hint="give the image as repository:tag, or name the signed reference "
                     "explicitly in verification.identity")
        return {"type": "exactReference", "dockerReference": f"{image.repository}:{image.tag}"}
    return {"type": "exactReference", "dockerReference": trust.identity}


def write_policy(workdir: Path, trust: Trust, image: ImageRef) -> tuple[Path, Path | None]:
    """Write policy.json (and registries.d when a lookaside is configured) under `workdir`."""
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
            "signedIdentity": identity_requirement(trust, image),
        }]
    policy = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {image.repository: requirements},
            "oci": {"": [{"type": "insecureAcceptAnything"}]},
            "dir": {"": [{"type": "insecureAcceptAnything"}]},
        },
    }
    policy_path = workdir / "policy.json"
    policy_path.write_text(json.dumps(policy, indent=2))
    registries_d = None
    if trust.enabled and trust.gpg_lookaside:
        registries_d = workdir / "registries.d"
        registries_d.mkdir(exist_ok=True)
        (registries_d / "cos-reconciler.yaml").write_text(json.dumps(
            {"docker": {image.repository: {"lookaside": trust.gpg_lookaside}}}))
    return policy_path, registries_d
