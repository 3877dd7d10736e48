"""fetch: copy the image by digest into the OCI layout cache, enforcing the signature policy."""

from __future__ import annotations

from reconciler import logs, policy, reference
from reconciler.plan import Step
from reconciler.retry import with_retries
from reconciler.steps.context import Context
from reconciler.tools import skopeo

log = logs.get_logger(__name__)


def fetch(ctx: Context, step: Step) -> None:
    """Download what the cache lacks (shared layers are reused); skip if already complete."""
    if ctx.cache.complete(step.digest) and step.detail("verify") != "gpg-policy":
        log.info("fetch: already in the cache", image=step.image)
        return
    ref = reference.parse(step.image)
    policy_path, registries_d = policy.write_policy(ctx.workdir / "trust", ctx.desired.trust, ref)
    ctx.cache.root.mkdir(parents=True, exist_ok=True)
    log.info("fetch", image=step.image, cache=str(ctx.cache.root))

    def attempt() -> None:
        skopeo.copy(f"docker://{step.image}", ctx.cache.skopeo_ref(step.digest),
                    image=step.image, access=ctx.access(ref.registry), policy=policy_path,
                    registries_d=registries_d, extra=("--remove-signatures",))

    with_retries(f"fetch {step.image}", attempt, ctx.desired.retries)
