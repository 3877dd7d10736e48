"""What the steps of one apply run share: the desired state, mounts, cache and scratch space."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.cache import LayoutCache
from reconciler.config import Desired
from reconciler.probe import Observed
from reconciler.resolve import access_for
from reconciler.tools.skopeo import Access


@dataclass(frozen=True)
class Context:
    """Shared, read-only inputs of the steps."""

    desired: Desired
    observed: Observed
    state_root: Path
    recovery_root: Path | None
    cache: LayoutCache
    workdir: Path

    def access(self, registry: str) -> Access:
        return access_for(self.desired.registry, registry)

    def target_root(self, target: str) -> Path:
        if target == "recovery":
            if self.recovery_root is None:
                raise AssertionError("recovery target without a COS_RECOVERY mount")
            return self.recovery_root
        return self.state_root
