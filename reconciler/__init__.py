"""cos-reconciler: converge a cOS / Elemental system to a declared container image."""

from __future__ import annotations

__version__ = "0.1.0"
