"""skopeo: resolve a manifest, copy an image into the OCI layout cache; map its errors.

Registry failures are sorted into permanent (unknown image, refused credentials, TLS trust,
rejected signatures) and transient (connection trouble, 5xx) so that only the latter are retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import (
    ImageNotFound,
    ReconcileError,
    RegistryAccessDenied,
    ToolFailed,
    TransientError,
    VerificationError,
)
from reconciler.tools._run import run


@dataclass(frozen=True)
class Access:
    """How skopeo reaches one registry."""

    tls_verify: bool = True
    cert_dir: Path | None = None
    auth_file: Path | None = None

    def flags(self, prefix: str = "") -> list[str]:
        """Command-line flags; `prefix` is "src-" or "dest-" for copy."""
        out = [f"--{prefix}tls-verify={'true' if self.tls_verify else 'false'}"]
        if self.cert_dir:
            out.append(f"--{prefix}cert-dir={self.cert_dir}")
        if self.auth_file:
            out.append(f"--{prefix}authfile={self.auth_file}")
        return out


_NOT_FOUND = ("manifest unknown", "name unknown", "not found", "unknown: repository",
              "repository name not known")
_DENIED = ("unauthorized", "authentication required", "denied", "x509:", "certificate signed by",
           "certificate is not", "tls: failed to verify", "bad certificate",
           "server gave http response to https client", "invalid username/password",
           "authorization", "no basic auth credentials")
_REJECTED = ("source image rejected", "a signature was required", "is not accepted",
             "signature by key", "invalid signature", "no signatures", "signature verification")
_TRANSIENT = ("connection refused", "connection reset", "i/o timeout", "timeout", "eof",
              "no such host", "temporary failure", "too many requests", "429",
              "500 internal server error", "502", "503", "504", "tls handshake timeout",
              "network is unreachable", "broken pipe", "unexpected end of json")


def classify(err: ToolFailed, image: str) -> ReconcileError:
    """Turn a failed skopeo run into the error type that says what to do about it."""
    text = err.stderr.lower()
    if "digest did not match" in text or ("manifest digest" in text and "does not match" in text):
        return VerificationError(
            f"the registry served bytes for {image} that do not match their digest: {_last(err)}",
            hint="the registry, a proxy or the network corrupts or tampers with data; nothing "
                 "was installed")
    if any(m in text for m in _REJECTED):
        return VerificationError(
            f"image {image} was refused by the signature policy: {_last(err)}",
            hint="check that the image is signed by one of verification.gpg.keys and that "
                 "verification.gpg.lookaside points at its signatures")
    if "server gave http response to https client" in text:
        return RegistryAccessDenied(
            f"registry for {image} speaks plain HTTP: {_last(err)}",
            hint="list it under registry.insecure if plain HTTP is really intended")
    if any(m in text for m in _DENIED):
        return RegistryAccessDenied(
            f"registry refused access to {image}: {_last(err)}",
            hint="check registry.auth_file credentials and registry.cert_dir (CA certificate)")
    if any(m in text for m in _NOT_FOUND):
        return ImageNotFound(
            f"image {image} does not exist in the registry: {_last(err)}",
            hint="check the repository and tag in the config (system.image)")
    if any(m in text for m in _TRANSIENT):
        return TransientError(
            f"registry for {image} could not be reached: {_last(err)}",
            hint="check the network and the registry; the run retried with backoff")
    return err


def _last(err: ToolFailed) -> str:
    lines = [ln for ln in err.stderr.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"exit {err.returncode}"


def inspect_raw(image: str, access: Access, *, timeout: float = 60.0) -> bytes:
    """The raw manifest bytes of `image` (one manifest request)."""
    try:
        return run(["skopeo", "inspect", "--raw", "--retry-times=0", *access.flags(),
                    f"docker://{image}"], timeout=timeout).stdout
    except ToolFailed as err:
        raise classify(err, image) from err


def copy(source: str, destination: str, *, image: str, access: Access, policy: Path,
         registries_d: Path | None = None, timeout: float = 3600.0,
         extra: Sequence[str] = ()) -> None:
    """`skopeo copy` enforcing `policy` (signature checks happen here)."""
    argv = ["skopeo", "--policy", str(policy)]
    if registries_d:
        argv += ["--registries.d", str(registries_d)]
    argv += ["copy", "--quiet", "--retry-times=0", *access.flags("src-"), *extra,
             source, destination]
    try:
        run(argv, timeout=timeout)
    except ToolFailed as err:
        raise classify(err, image) from err
