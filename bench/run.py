"""`python -m bench.run`: build the sandbox, time every contender, write the results.

    python -m bench.run [--runs N] [--sizes 100,300,1000] [--main-size 300] [--quick]
                        [--out DIR] [--no-tree-check]

The main size gets every contender; the other sizes (the memory curve) get the floor and a
cold reconcile. Rounds alternate the order of the contenders (A B C, then C B A, ...).
Results go to bench/results.json and docs/benchmarks.md (or DIR/ with --out); `--quick` is a
tiny smoke run (one 8 MB image, one run each) that writes nothing unless --out is given.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from bench import contenders as c
from bench import report
from bench.images import Pair
from bench.world import World
from reconciler import logs

ROOT = Path(__file__).resolve().parents[1]
QUICK_SIZE = 8
NOOP_REPS = 5
DEFAULT_RUNS = 5


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split(
        "\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int,
                        help=f"timed runs per contender (default {DEFAULT_RUNS})")
    parser.add_argument("--sizes", help="image sizes in MB, comma-separated "
                        "(default 100,300,1000)")
    parser.add_argument("--main-size", type=int,
                        help="the size that gets every contender (default: the one nearest 300)")
    parser.add_argument("--noop-reps", type=int, help="timed no-op runs per round (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run: one 8 MB image, one run, nothing written "
                             "unless --out")
    parser.add_argument("--out", type=Path, help="write results.json and benchmarks.md here")
    parser.add_argument("--no-tree-check", action="store_true",
                        help="skip comparing reconcile's tree with GNU tar's")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else DEFAULT_RUNS)
    default_sizes = str(QUICK_SIZE) if args.quick else "100,300,1000"
    args.sizes = sorted({int(x) for x in (args.sizes or default_sizes).split(",") if x.strip()})
    if args.main_size is None:
        args.main_size = min(args.sizes, key=lambda z: abs(z - 300))
    elif args.main_size not in args.sizes:
        args.sizes = sorted({*args.sizes, args.main_size})
    args.noop_reps = args.noop_reps or (2 if args.quick else NOOP_REPS)
    if args.runs < 1 or any(z < 1 for z in args.sizes):
        parser.error("--runs and --sizes must be positive")
    return args


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _note(samples: list[c.Sample]) -> list[c.Sample]:
    for s in samples:
        extra = ""
        if s.rss_self_mb is not None:
            extra += f", RSS {s.rss_self_mb:.1f} MB"
        if s.fetched_bytes:
            extra += f", {s.fetched_bytes / 1e6:.2f} MB downloaded"
        _progress(f"  {s.contender:<22} {s.size_mb:>5} MB  round {s.round}: "
                  f"{s.wall_s:.3f} s{extra}")
    return samples


Group = Callable[[int], list[c.Sample]]


def _groups(world: World, pair: Pair, *, full: bool, noop_reps: int) -> list[Group]:
    """The contenders for one size, as groups each on its own fresh disk."""
    def floor(rnd: int) -> list[c.Sample]:
        with world.disk(pair) as disk:
            out = [c.floor(world, disk, pair, rnd)]
            if full:
                out.append(c.dd_fsync(disk, pair, rnd))
            return _note(out)

    def elemental(rnd: int) -> list[c.Sample]:
        with world.disk(pair) as disk:
            return _note([c.elemental_style(world, disk, pair, rnd)])

    def chain(rnd: int) -> list[c.Sample]:
        with world.disk(pair) as disk:
            m = c.machine(world, disk, f"r{rnd}-{pair.size_mb}")
            out = _note([c.reconcile_upgrade(m, pair, rnd, contender="reconcile_cold",
                                             image=pair.v1)])
            if full:
                out += _note([c.reconcile_upgrade(m, pair, rnd, contender="reconcile_warm",
                                                  image=pair.v2)])
                os.sync()
                out += _note(c.quick_series(m, pair, rnd, noop_reps))
            return out

    return [floor, elemental, chain] if full else [floor, chain]


def _rounds(world: World, pair: Pair, *, runs: int, full: bool, noop_reps: int) -> list[
        c.Sample]:
    samples: list[c.Sample] = []
    groups = _groups(world, pair, full=full, noop_reps=noop_reps)
    for rnd in range(runs):
        order = groups if rnd % 2 == 0 else list(reversed(groups))
        for group in order:
            samples += group(rnd)
    return samples


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench: needs root (loop devices, mounts, drop_caches)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _on_sigterm)
    logs.configure(debug=False)
    os.umask(0o022)
    command = "python -m bench.run" + (" " + shlex.join(argv if argv is not None
                                                         else sys.argv[1:])
                                       if (argv or sys.argv[1:]) else "")
    machine_info = report.machine()
    started = time.monotonic()
    samples: list[c.Sample] = []
    tree_check: list[str] | None = None
    try:
        with World() as world:
            _progress(f"work directory {world.workdir}; registry {world.reg().host}")
            for size in args.sizes:
                _progress(f"building the {size} MB image pair")
                pair = world.build(size)
                _progress(f"  {pair.v1.files} files, {pair.v1.entries} entries, layers "
                          f"{[round(b / 1e6, 1) for b in pair.v2.layer_sizes]} MB")
            if not args.no_tree_check:
                _progress(f"tree check ({args.main_size} MB): reconcile vs GNU tar")
                with world.disk(world.pairs[args.main_size]) as disk:
                    tree_check = c.check_tree(world, disk, world.pairs[args.main_size])
                _progress("  identical" if not tree_check else
                          f"  {len(tree_check)} difference(s): {tree_check[:5]}")
            for size in args.sizes:
                full = size == args.main_size
                _progress(f"timing {size} MB ({'all contenders' if full else 'memory curve'}"
                          f", {args.runs} run(s))")
                samples += _rounds(world, world.pairs[size], runs=args.runs, full=full,
                                   noop_reps=args.noop_reps)
            settings = {"runs": args.runs, "sizes_mb": args.sizes,
                        "main_size_mb": args.main_size, "noop_reps_per_round": args.noop_reps,
                        "quick": args.quick, "command": command,
                        "elapsed_s": round(time.monotonic() - started, 1)}
            machine_info["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
            doc = report.results(samples, world.pairs, main_size=args.main_size,
                                 settings=settings, machine_info=machine_info,
                                 tree_check=tree_check)
    except KeyboardInterrupt:
        print("bench: interrupted; sandbox removed", file=sys.stderr)
        return 130
    print(report.render_table(report.table_rows(doc, samples)))
    print("\nTargets:")
    print(report.render_targets(doc))
    out = args.out
    if out is None and not args.quick:
        json_path, md_path = ROOT / "bench" / "results.json", ROOT / "docs" / "benchmarks.md"
    elif out is not None:
        json_path, md_path = out / "results.json", out / "benchmarks.md"
    else:
        return 0
    report.write(doc, samples, json_path=json_path, md_path=md_path, command=command)
    print(f"\nwrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
