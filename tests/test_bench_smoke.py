"""The benchmark harness still runs end to end: a tiny image, one run of every contender."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.tools._run import run

pytestmark = pytest.mark.needs_root

ROOT = Path(__file__).resolve().parents[1]

REQUIRED = ("full_upgrade_s", "floor_s", "elemental_style_s", "full_upgrade_ratio_vs_floor",
            "full_upgrade_ratio_vs_elemental_style", "warm_upgrade_s", "warm_fetch_bytes",
            "warm_new_layer_bytes", "warm_fetch_bytes_ratio", "noop_pinned_s", "noop_tag_s",
            "python_pass_s", "noop_pinned_ratio_vs_python", "peak_rss_mb")
POSITIVE = ("full_upgrade_s", "floor_s", "elemental_style_s", "full_upgrade_ratio_vs_floor",
            "full_upgrade_ratio_vs_elemental_style", "warm_upgrade_s", "warm_fetch_bytes",
            "warm_new_layer_bytes", "warm_fetch_bytes_ratio", "noop_pinned_s", "noop_tag_s",
            "python_pass_s", "noop_pinned_ratio_vs_python", "skopeo_inspect_s", "dd_fsync_s")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    res = run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
              env={"PYTHONPATH": str(ROOT)}, accept=range(256), timeout=300)
    assert res.returncode == 0, res.text + res.stderr.decode(errors="replace")[-4000:]
    assert (out / "benchmarks.md").is_file()
    doc: dict[str, Any] = json.loads((out / "results.json").read_text())
    doc["_stdout"] = res.text
    doc["_markdown"] = (out / "benchmarks.md").read_text()
    return doc


def test_results_have_every_required_key(results: dict[str, Any]) -> None:
    """results.json carries every key the issue asks for."""
    assert [k for k in REQUIRED if k not in results] == []


def test_times_sizes_and_ratios_are_positive(results: dict[str, Any]) -> None:
    """Every time, byte count and ratio was measured and is positive."""
    assert {k: results[k] for k in POSITIVE if not (results[k] and results[k] > 0)} == {}


def test_warm_upgrade_downloads_little_but_something(results: dict[str, Any]) -> None:
    """The warm run downloads the new layer (more than nothing, less than the whole image)."""
    assert results["warm_fetch_bytes"] >= results["warm_new_layer_bytes"]
    assert results["warm_fetch_bytes"] < results["cold_fetch_bytes"]


def test_noop_runs_query_the_registry_only_for_tags(results: dict[str, Any]) -> None:
    """A digest-pinned no-op asks the registry nothing; a tag no-op one manifest."""
    assert results["noop_pinned_manifest_requests"] == 0
    assert results["noop_tag_manifest_requests"] == 1


def test_peak_rss_is_reported_per_size(results: dict[str, Any]) -> None:
    """peak_rss_mb maps each image size to the reconcile process's peak RSS in MB."""
    sizes = results["settings"]["sizes_mb"]
    assert sorted(results["peak_rss_mb"]) == sorted(str(z) for z in sizes)
    assert all(5 < mb < 1000 for mb in results["peak_rss_mb"].values())


def test_installed_tree_matches_gnu_tar(results: dict[str, Any]) -> None:
    """The tree check ran and found reconcile's tree identical to GNU tar's."""
    assert results["tree_check"] == {"ran": True, "identical": True, "differences": []}


def test_outputs_show_the_table_and_targets(results: dict[str, Any]) -> None:
    """stdout and benchmarks.md show the table, the targets and the machine."""
    for contender in ("floor", "elemental_style", "reconcile_cold", "reconcile_noop_tag"):
        assert contender in results["_stdout"]
        assert contender in results["_markdown"]
    assert "Targets" in results["_stdout"]
    assert "## Machine" in results["_markdown"]
    assert len(results["targets"]) >= 7
