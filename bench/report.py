"""Turn samples into results: medians, ratios, targets; render the table, JSON and Markdown."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.contenders import Sample
from bench.images import Pair
from bench.world import image_bytes
from reconciler.errors import ReconcileError
from reconciler.tools._run import run

FORMAT_VERSION = 1
ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
MIB = 1 << 20

CONTENDERS = (
    ("floor", "floor: skopeo copy + GNU tar into a fresh loop-mounted ext4 image"),
    ("elemental_style", "elemental-style: skopeo copy, tar into a tree, mkfs, rsync -aHAX"),
    ("reconcile_cold", "reconcile, cold: v1 onto the disk, empty layer cache"),
    ("reconcile_warm", "reconcile, warm: v1 -> v2, only the top layer is new"),
    ("reconcile_noop_pinned", "reconcile, no-op, digest-pinned config"),
    ("reconcile_noop_tag", "reconcile, no-op, tag config"),
    ("python_pass", "python3 -c pass"),
    ("skopeo_inspect", "skopeo inspect --raw (one tag resolution)"),
    ("dd_fsync", "dd of the final image size, conv=fsync"),
)


def _median(values: Iterable[float | int | None]) -> float | None:
    got = [float(v) for v in values if v is not None]
    return statistics.median(got) if got else None


def _max(values: Iterable[float | int | None]) -> float | None:
    got = [float(v) for v in values if v is not None]
    return max(got) if got else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _r(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None else None


class Summary:
    """Medians and maxima per (contender, size)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = list(samples)

    def of(self, contender: str, size: int) -> list[Sample]:
        return [s for s in self.samples if s.contender == contender and s.size_mb == size]

    def median(self, contender: str, size: int, attr: str = "wall_s") -> float | None:
        return _median(getattr(s, attr) for s in self.of(contender, size))

    def peak(self, contender: str, size: int, attr: str) -> float | None:
        return _max(getattr(s, attr) for s in self.of(contender, size))


def machine() -> dict[str, Any]:
    """What this machine is: CPU, memory, kernel, disk, tool versions, load."""
    def text(argv: list[str]) -> str:
        try:
            return run(argv, accept=range(256)).text.strip()
        except ReconcileError:  # a tool that is not installed: leave the field empty
            return ""

    lscpu = {}
    for line in text(["lscpu"]).splitlines():
        key, _, value = line.partition(":")
        lscpu[key.strip()] = value.strip()
    meminfo = dict(line.split(":", 1) for line in
                   Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    mem_kib = int(meminfo.get("MemTotal", "0 kB").split()[0])
    fs = text(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", "/var/tmp"])
    return {
        "nproc": int(text(["nproc"]) or 0),
        "cpu_model": lscpu.get("Model name", platform.processor()),
        "hypervisor": lscpu.get("Hypervisor vendor", "none"),
        "memory_mib": mem_kib // 1024,
        "uname": text(["uname", "-srvmo"]),
        "workdir_fs": fs,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "product_commit": text(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "product_tree_modified": bool(text(["git", "-C", str(ROOT), "status", "--porcelain",
                                            "--", "reconciler", "schemas"])),
        "tools": {
            "skopeo": text(["skopeo", "--version"]),
            "tar": (text(["tar", "--version"]) or "tar").splitlines()[0],
            "igzip": (text(["igzip", "--version"]) or "igzip").splitlines()[0],
            "mkfs.ext4": (run(["mke2fs", "-V"], accept=range(256)).stderr.decode()
                          .splitlines() or ["?"])[0],
            "rsync": (text(["rsync", "--version"]) or "rsync").splitlines()[0],
        },
    }


def results(samples: Sequence[Sample], pairs: dict[int, Pair], *, main_size: int,
            settings: dict[str, Any], machine_info: dict[str, Any],
            tree_check: list[str] | None) -> dict[str, Any]:
    """The results document (bench/results.json)."""
    s = Summary(samples)
    m = main_size
    pair = pairs[m]
    full, floor_s, elemental = (s.median("reconcile_cold", m), s.median("floor", m),
                                s.median("elemental_style", m))
    warm_fetch = s.median("reconcile_warm", m, "fetched_bytes")
    noop_pinned, noop_tag = (s.median("reconcile_noop_pinned", m),
                             s.median("reconcile_noop_tag", m))
    python_s, inspect_s = s.median("python_pass", m), s.median("skopeo_inspect", m)
    pinned_manifests = s.median("reconcile_noop_pinned", m, "manifest_requests")
    tag_manifests = s.median("reconcile_noop_tag", m, "manifest_requests")
    sizes = sorted(pairs)
    peak = {str(z): _r(s.peak("reconcile_cold", z, "rss_self_mb"), 1) for z in sizes}
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "main_size_mb": m,
        "full_upgrade_s": _r(full),
        "floor_s": _r(floor_s),
        "elemental_style_s": _r(elemental),
        "full_upgrade_ratio_vs_floor": _r(_ratio(full, floor_s)),
        "full_upgrade_ratio_vs_elemental_style": _r(_ratio(full, elemental)),
        "speedup_vs_elemental_style": _r(_ratio(elemental, full)),
        "warm_upgrade_s": _r(s.median("reconcile_warm", m)),
        "warm_fetch_bytes": int(warm_fetch) if warm_fetch is not None else None,
        "warm_new_layer_bytes": pair.new_layer_bytes,
        "warm_fetch_bytes_ratio": _r(_ratio(warm_fetch, pair.new_layer_bytes), 4),
        "cold_fetch_bytes": _int(s.median("reconcile_cold", m, "fetched_bytes")),
        "floor_fetch_bytes": _int(s.median("floor", m, "fetched_bytes")),
        "noop_pinned_s": _r(noop_pinned, 4),
        "noop_tag_s": _r(noop_tag, 4),
        "noop_tag_extra_s": _r(noop_tag - noop_pinned, 4)
        if noop_tag is not None and noop_pinned is not None else None,
        "noop_pinned_manifest_requests": _int(pinned_manifests),
        "noop_tag_manifest_requests": _int(tag_manifests),
        "noop_pinned_registry_requests": _int(s.median("reconcile_noop_pinned", m,
                                                       "registry_requests")),
        "noop_tag_registry_requests": _int(s.median("reconcile_noop_tag", m,
                                                    "registry_requests")),
        "python_pass_s": _r(python_s, 4),
        "skopeo_inspect_s": _r(inspect_s, 4),
        "dd_fsync_s": _r(s.median("dd_fsync", m)),
        "noop_pinned_ratio_vs_python": _r(_ratio(noop_pinned, python_s)),
        "noop_pinned_peak_rss_mb": _r(s.peak("reconcile_noop_pinned", m, "rss_self_mb"), 1),
        "warm_peak_rss_mb": _r(s.peak("reconcile_warm", m, "rss_self_mb"), 1),
        "peak_rss_mb": peak,
        "peak_children_rss_mb": {str(z): _r(s.peak("reconcile_cold", z, "rss_children_mb"), 1)
                                 for z in sizes},
        "per_size": {str(z): _per_size(s, z, pairs[z]) for z in sizes},
        "tree_check": ({"ran": False} if tree_check is None else
                       {"ran": True, "identical": not tree_check,
                        "differences": tree_check[:50]}),
        "machine": machine_info,
        "settings": settings,
    }
    doc["targets"] = targets(doc)
    doc["samples"] = [x.to_json() for x in samples]
    return doc


def _int(value: float | None) -> int | None:
    return int(value) if value is not None else None


def _per_size(s: Summary, size: int, pair: Pair) -> dict[str, Any]:
    full, floor_s = s.median("reconcile_cold", size), s.median("floor", size)
    return {
        "image": {"files": pair.v1.files, "entries": pair.v1.entries,
                  "unpacked_bytes": pair.v1.unpacked_bytes,
                  "v1_layer_bytes": list(pair.v1.layer_sizes),
                  "v2_new_layer_bytes": pair.new_layer_bytes,
                  "image_file_bytes": image_bytes(pair, tag="v1")},
        "runs": len(s.of("reconcile_cold", size)),
        "full_upgrade_s": _r(full),
        "floor_s": _r(floor_s),
        "full_upgrade_ratio_vs_floor": _r(_ratio(full, floor_s)),
        "full_upgrade_cpu_s": _r(s.median("reconcile_cold", size, "cpu_s")),
        "floor_cpu_s": _r(s.median("floor", size, "cpu_s")),
        "peak_rss_mb": _r(s.peak("reconcile_cold", size, "rss_self_mb"), 1),
        "peak_children_rss_mb": _r(s.peak("reconcile_cold", size, "rss_children_mb"), 1),
        "full_upgrade_phases_s": _phases(s.of("reconcile_cold", size)),
        "warm_upgrade_phases_s": _phases(s.of("reconcile_warm", size)),
    }


def _phases(samples: Sequence[Sample]) -> dict[str, float | None]:
    """Median seconds per phase over `samples` (see bench.measure.phases)."""
    names: list[str] = []
    for sample in samples:
        names += [n for n in (sample.phases or {}) if n not in names]
    return {n: _r(_median((x.phases or {}).get(n) for x in samples)) for n in names}


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it holds."""
    def row(name: str, target: str, value: Any, holds: bool | None) -> dict[str, Any]:
        return {"name": name, "target": target, "value": value, "holds": holds}

    def le(value: float | None, bound: float) -> bool | None:
        return None if value is None else value <= bound

    rss = [v for v in doc["peak_rss_mb"].values() if v is not None]
    extra = (None if doc["noop_tag_manifest_requests"] is None
             or doc["noop_pinned_manifest_requests"] is None
             else doc["noop_tag_manifest_requests"] - doc["noop_pinned_manifest_requests"])
    speed = doc["speedup_vs_elemental_style"]
    return [
        row("full upgrade vs floor", "<= 1.3x", doc["full_upgrade_ratio_vs_floor"],
            le(doc["full_upgrade_ratio_vs_floor"], 1.3)),
        row("full upgrade vs elemental-style", ">= 1.5x faster", speed,
            None if speed is None else speed >= 1.5),
        row("warm upgrade download", "<= 1.05x new layer", doc["warm_fetch_bytes_ratio"],
            le(doc["warm_fetch_bytes_ratio"], 1.05)),
        row("no-op (digest-pinned) time", "<= 0.15 s", doc["noop_pinned_s"],
            le(doc["noop_pinned_s"], 0.15)),
        row("no-op (digest-pinned) vs python3 -c pass", "<= 5x",
            doc["noop_pinned_ratio_vs_python"], le(doc["noop_pinned_ratio_vs_python"], 5.0)),
        row("no-op (tag) extra manifest requests", "== 1", extra,
            None if extra is None else extra == 1),
        row("reconcile peak RSS, every image size", "<= 60 MB",
            max(rss) if rss else None, le(max(rss) if rss else None, 60.0)),
    ]


# -- rendering ------------------------------------------------------------------------------

def _fmt(value: float | None, unit: str = "s", digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}" if unit else f"{value:.{digits}f}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= MB:
        return f"{value / MB:.1f} MB"
    if value >= 1000:
        return f"{value / 1000:.1f} kB"
    return f"{int(value)} B"


def table_rows(doc: dict[str, Any], samples: Sequence[Sample]) -> list[list[str]]:
    """One row per (contender, size) that ran."""
    s = Summary(samples)
    rows = []
    for size in sorted({x.size_mb for x in samples}):
        for name, _ in CONTENDERS:
            runs = s.of(name, size)
            if not runs:
                continue
            wall = s.median(name, size)
            rows.append([
                f"{size} MB", name, str(len(runs)),
                _fmt(wall, "s", 3 if wall is not None and wall < 1 else 2),
                _fmt(min(x.wall_s for x in runs), "s", 3 if wall and wall < 1 else 2),
                _fmt(s.median(name, size, "cpu_s")),
                _fmt(s.peak(name, size, "rss_self_mb"), "", 1),
                _fmt(s.peak(name, size, "rss_children_mb"), "", 1),
                _bytes(s.median(name, size, "fetched_bytes")),
            ])
    del doc
    return rows


HEADER = ["image", "contender", "runs", "median", "best", "cpu", "RSS MB", "children MB",
          "downloaded"]


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def render_targets(doc: dict[str, Any]) -> str:
    out = []
    for t in doc["targets"]:
        mark = {True: "holds", False: "MISSED", None: "not measured"}[t["holds"]]
        out.append(f"  {t['name']:<42} target {t['target']:<20} got {t['value']!s:<10} {mark}")
    return "\n".join(out)


def markdown(doc: dict[str, Any], samples: Sequence[Sample], command: str) -> str:
    """docs/benchmarks.md, written from this run."""
    mach = doc["machine"]
    md_rows = table_rows(doc, samples)
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {doc['generated_at']}; the raw numbers are in "
        "`bench/results.json`. Do not edit by hand: rerun the harness.",
        "",
        "## Machine",
        "",
        f"- CPU: {mach['nproc']} x {mach['cpu_model']} (hypervisor: {mach['hypervisor']})",
        f"- memory: {mach['memory_mib']} MiB; kernel: `{mach['uname']}`",
        f"- work directory on: `{mach['workdir_fs']}` (sandbox disks are loop-mounted files "
        "there)",
        f"- load average at start: {' '.join(mach['loadavg'])}",
        f"- tools: {'; '.join(f'`{v}`' for v in mach['tools'].values())}; Python "
        f"{mach['python']}",
        f"- product: commit `{mach['product_commit'] or '?'}`"
        + (" with uncommitted changes in reconciler/" if mach["product_tree_modified"] else ""),
        "",
        "## Results",
        "",
        f"Median of {doc['settings']['runs']} runs each, contenders alternated (A B C, C B A, "
        "...). `cpu` is user+system time of every process involved; `RSS MB` is the reconcile "
        "process's own peak; `children MB` the largest peak of any process it started "
        "(sampled every 20 ms); `downloaded` counts blob bytes served by the registry.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
        *["| " + " | ".join(r) + " |" for r in md_rows],
        "",
        "### Targets (from issue 4)",
        "",
        "| target | wanted | measured | holds |",
        "|---|---|---|---|",
        *[f"| {t['name']} | {t['target']} | {t['value']} | "
          f"{ {True: 'yes', False: '**no**', None: 'n/a'}[t['holds']] } |"
          for t in doc["targets"]],
        "",
        "Peak RSS of the reconcile process by image size: "
        + ", ".join(f"{k} MB image: {v} MB" for k, v in doc["peak_rss_mb"].items()) + ".",
        "",
        f"Warm upgrade: {doc['warm_fetch_bytes']} bytes downloaded for a new layer of "
        f"{doc['warm_new_layer_bytes']} bytes (the rest is the new config blob).",
        "",
        f"Tree check: {_tree_check(doc['tree_check'])}",
        "",
        "### Where reconcile's time goes",
        "",
        "Median seconds per phase, from reconcile's own log (`startup` is process start to "
        "the first step: interpreter, imports, probing the disk, resolving the tag, all read "
        "from disk since caches were dropped; the last step runs to the process's exit):",
        "",
        *_phase_table(doc),
        "",
        "## Images",
        "",
        "| size | files | entries | unpacked | v1 layers (compressed) | v2 new layer | "
        "image file |",
        "|---|---|---|---|---|---|---|",
        *[f"| {z} MB | {p['image']['files']} | {p['image']['entries']} | "
          f"{_bytes(p['image']['unpacked_bytes'])} | "
          f"{', '.join(_bytes(b) for b in p['image']['v1_layer_bytes'])} | "
          f"{_bytes(p['image']['v2_new_layer_bytes'])} | "
          f"{_bytes(p['image']['image_file_bytes'])} |"
          for z, p in doc["per_size"].items()],
        "",
        "Built by `bench/images.py`: the sandbox's awkward base entries (setuid/setgid, file "
        "capabilities, devices, a fifo, hardlinks, symlinks, xattrs) plus generated files "
        "(~34 per MB, log-normal sizes, text-like content that gzip halves, a hardlink every "
        "97 files, a symlink every 53, a user xattr every 71). v1 has 3 layers (base 75 %, "
        "middleware 20 %, app 5 %); v2 adds one layer that rewrites ~5 % of the bytes and "
        "carries a whiteout and an opaque directory.",
        "",
        "## Method",
        "",
        "- Each timed run of floor, elemental-style, reconcile cold and reconcile warm starts "
        "after `sync` and `echo 3 > /proc/sys/vm/drop_caches`, on a fresh sandbox disk (a "
        "loop-attached GPT disk file with COS_* ext4 partitions), so no contender reads the "
        "image from memory. Partition mounts are inside the timed region for every contender.",
        "- floor: `skopeo copy docker://... oci:DIR` onto COS_PERSISTENT, `fallocate` + "
        "`mkfs.ext4` (reconcile's options and size) on COS_STATE, `mount -o loop`, "
        "`tar --xattrs --xattrs-include='*' --numeric-owner -p -I igzip -xf LAYER` per layer, "
        "umount, `sync`. No signature check.",
        "- elemental-style: the same copy, the layers extracted by the same tar into a tree on "
        "COS_PERSISTENT, `du` for the size (tree + 256 MiB, sparse), `mkfs.ext4`, "
        "`mount -o loop`, `rsync -aHAX --numeric-ids tree/ mnt/`, umount, `sync`. Removing "
        "the tree afterwards is not timed.",
        "- reconcile cold installs v1 by tag onto a fresh disk (GPG signature verified); warm "
        "then installs v2 on the same disk with v1's layers cached; the no-op runs follow on "
        "the converged disk (digest-pinned and tag configs), timed with warm caches after "
        "one untimed run, interleaved with `python3 -c pass` (the interpreter reconcile runs "
        "on, its venv) and `skopeo inspect --raw` of the tag (A B C D, D C B A, ...). "
        "Reconcile runs through `bench/_rusage.py`, which runs the console script with "
        "runpy and reports its peak RSS and CPU time at exit.",
        "- Peak RSS is VmHWM from /proc: reconcile's own is read at its exit by "
        "`bench/_rusage.py`; its children's is sampled every 20 ms (every process in the "
        "run's session). getrusage's ru_maxrss is not used: Linux carries it across exec, so "
        "a process started by vfork reports its parent's peak (the harness's, ~60 MB).",
        "- The tree check installs v1 with reconcile and with the floor on one disk and "
        "compares both trees (type, mode, owner, size, sha256, symlink targets, devices, "
        "xattrs, hardlinks, mtimes).",
        "",
        "## Rerun",
        "",
        "```",
        "make bench                                   # everything, as committed",
        "python -m bench.run --runs 5 --sizes 100,300,1000",
        "python -m bench.run --quick --out /tmp/b     # tiny smoke run, seconds",
        "```",
        "",
        "Needs root (loop devices, mounts, drop_caches). Sandbox disks, the registry and "
        "all mounts are removed at the end, also after a failure or Ctrl-C.",
        "",
    ]
    return "\n".join(lines)


def _phase_table(doc: dict[str, Any]) -> list[str]:
    rows = []
    for size, per in doc["per_size"].items():
        for what in ("full_upgrade", "warm_upgrade"):
            got = per.get(f"{what}_phases_s") or {}
            if got:
                cells = ", ".join(f"{k} {v}" for k, v in got.items())
                rows.append(f"| {size} MB | {what.replace('_', ' ')} | {cells} |")
    if not rows:
        return ["(no phase data)"]
    return ["| image | run | phases (s) |", "|---|---|---|", *rows]


def _tree_check(check: dict[str, Any]) -> str:
    if not check["ran"]:
        return "not run."
    if check["identical"]:
        return ("the tree reconcile installed is identical to the one GNU tar extracted from "
                "the same layers.")
    return "DIFFERENCES:\n\n" + "\n".join(f"    {d}" for d in check["differences"])


def write(doc: dict[str, Any], samples: Sequence[Sample], *, json_path: Path, md_path: Path,
          command: str) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, json_path)
    md_path.write_text(markdown(doc, samples, command))
