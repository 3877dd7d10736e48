"""The contenders: raw-tool pipelines (floor, elemental-style), reconcile runs, reference points.

Each timed run starts with cold caches (`drop_caches`) and its own fresh disk, except the
sub-second ones (no-op runs and reference commands), which are timed warm after one untimed
warm-up run, like `python3 -c pass` they are compared with.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.images import BenchImage, Pair
from bench.measure import drop_caches, phases, run_measured, run_quick, timed
from bench.world import World, image_bytes
from reconciler.sandbox.disk import SandboxDisk
from reconciler.tools._run import run

MIB = 1 << 20
# GNU tar as an OCI runtime would need it: xattrs (file capabilities included), numeric owners;
# decompressed by igzip (ISA-L), the fastest gzip decompressor here, as reconcile uses.
TAR_X = ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-p", "-I", "igzip"]
# The same filesystem reconcile makes (see reconciler/tools/e2fs.py), minus label and UUID.
MKFS_LIKE_RECONCILE = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-i", "4096", "-m", "0",
                       "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1"]
ELEMENTAL_MARGIN = 256 * MIB


class ContenderFailed(Exception):
    """A contender did not do what it must (wrong exit status, changes on a no-op, ...)."""


@dataclass
class Sample:
    """One timed run of one contender."""

    contender: str
    size_mb: int
    round: int
    wall_s: float
    cpu_s: float | None = None
    rss_self_mb: float | None = None
    rss_children_mb: float | None = None
    rss_children_rusage_mb: float | None = None
    fetched_bytes: int | None = None
    registry_requests: int | None = None
    manifest_requests: int | None = None
    phases: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


# -- raw tools ------------------------------------------------------------------------------

def _skopeo_copy(world: World, image: BenchImage, oci: Path) -> None:
    assert world.factory is not None
    run(["skopeo", "--policy", str(world.factory.push_policy), "copy", "--quiet",
         "--remove-signatures", "--src-tls-verify=false", f"docker://{image.reference}",
         f"oci:{oci}:{image.tag}"])


def _extract(image: BenchImage, oci: Path, into: Path) -> None:
    for digest in image.layers:
        blob = oci / "blobs" / "sha256" / digest.removeprefix("sha256:")
        run([*TAR_X, "-xf", str(blob), "-C", str(into)])


@contextlib.contextmanager
def _loop_mounted(disk: SandboxDisk, image_file: Path) -> Any:
    target = Path(tempfile.mkdtemp(prefix="mnt-bench-", dir=disk.workdir))
    run(["mount", "-o", "loop,noatime", str(image_file), str(target)])
    try:
        yield target
    finally:
        run(["umount", str(target)])  # a `mount -o loop` device detaches itself
        target.rmdir()


def floor(world: World, disk: SandboxDisk, pair: Pair, rnd: int) -> Sample:
    """skopeo copy, then GNU tar extracts each layer into a fresh loop-mounted ext4 image."""
    image, size = pair.v1, image_bytes(pair, tag="v1")
    registry = world.reg()
    drop_caches()
    mark = registry.mark()
    with timed() as clock:
        with disk.mount("COS_PERSISTENT") as persistent, disk.mount("COS_STATE") as state:
            oci = persistent / "floor-oci"
            _skopeo_copy(world, image, oci)
            target = state / "cOS" / "floor.img"
            run(["fallocate", "-l", str(size), str(target)])
            run([*MKFS_LIKE_RECONCILE, str(target)])
            with _loop_mounted(disk, target) as root:
                _extract(image, oci, root)
        run(["sync"])
    return Sample("floor", pair.size_mb, rnd, clock.wall_s, clock.cpu_s,
                  fetched_bytes=registry.blob_bytes_served(mark))


def dd_fsync(disk: SandboxDisk, pair: Pair, rnd: int) -> Sample:
    """dd of the final image size from /dev/zero onto COS_STATE, conv=fsync (after `floor`)."""
    size = image_bytes(pair, tag="v1")
    with disk.mount("COS_STATE") as state:
        (state / "cOS" / "floor.img").unlink(missing_ok=True)
        drop_caches()
        with timed() as clock:
            run(["dd", "if=/dev/zero", f"of={state / 'cOS' / 'dd.img'}", "bs=4M",
                 f"count={-(-size // (4 * MIB))}", "conv=fsync", "status=none"])
        (state / "cOS" / "dd.img").unlink()
    return Sample("dd_fsync", pair.size_mb, rnd, clock.wall_s, clock.cpu_s)


def elemental_style(world: World, disk: SandboxDisk, pair: Pair, rnd: int) -> Sample:
    """Upstream's shape: unpack into a tree, size it, mkfs a sparse image, rsync the tree in."""
    image = pair.v1
    registry = world.reg()
    drop_caches()
    mark = registry.mark()
    with timed() as clock:
        with disk.mount("COS_PERSISTENT") as persistent, disk.mount("COS_STATE") as state:
            oci = persistent / "elemental-oci"
            _skopeo_copy(world, image, oci)
            tree = persistent / "elemental-tree"
            tree.mkdir()
            _extract(image, oci, tree)
            used = int(run(["du", "-s", "-B1", "--apparent-size", str(tree)]).text.split()[0])
            target = state / "cOS" / "transition.img"
            run(["truncate", "-s", str(used + ELEMENTAL_MARGIN), str(target)])
            run(["mkfs.ext4", "-q", "-F", "-L", "COS_ACTIVE", str(target)])
            with _loop_mounted(disk, target) as root:
                run(["rsync", "-aHAX", "--numeric-ids", f"{tree}/", f"{root}/"])
        run(["sync"])
    return Sample("elemental_style", pair.size_mb, rnd, clock.wall_s, clock.cpu_s,
                  fetched_bytes=registry.blob_bytes_served(mark))


# -- reconcile ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Machine:
    """A disk, a host root and a config file for a chain of reconcile runs."""

    world: World
    disk: SandboxDisk
    host_root: Path
    config: Path
    scratch: Path

    def args(self) -> list[str]:
        return ["--config", str(self.config), "--disk", self.disk.device,
                "--host-root", str(self.host_root), "apply", "--detailed-exitcode"]


def machine(world: World, disk: SandboxDisk, name: str) -> Machine:
    host = world.host_root(name)
    scratch = host.parent / f"{name}-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    return Machine(world, disk, host, host / "oem" / "upgrade.yaml", scratch)


def _expect(usage_exit: int, want: int, what: str, log: str) -> None:
    if usage_exit != want:
        raise ContenderFailed(f"reconcile ({what}) exited {usage_exit}, expected {want}:\n"
                              f"{log[-3000:]}")


def reconcile_upgrade(m: Machine, pair: Pair, rnd: int, *, contender: str,
                      image: BenchImage) -> Sample:
    """One timed apply that installs `image` (exit 2: changed), caches dropped first."""
    m.world.write_config(m.config, image.reference)
    registry = m.world.reg()
    drop_caches()
    mark = registry.mark()
    usage = run_measured(m.args(), m.scratch, name=f"{contender}-{rnd}")
    _expect(usage.exit, 2, contender, usage.log)
    requests = registry.requests(mark)
    return Sample(contender, pair.size_mb, rnd, usage.wall_s, usage.cpu_s, usage.self_mb,
                  usage.children_mb, usage.children_rusage_mb,
                  fetched_bytes=registry.blob_bytes_served(mark),
                  registry_requests=len(requests),
                  manifest_requests=sum("/manifests/" in r.path for r in requests),
                  phases=phases(usage))


def _noop(m: Machine, pair: Pair, rnd: int, *, contender: str, image: str,
          name: str) -> Sample:
    """One timed apply on a converged system (exit 0: no changes), caches left warm."""
    m.world.write_config(m.config, image)
    registry = m.world.reg()
    mark = registry.mark()
    usage = run_measured(m.args(), m.scratch, name=name, sample=False)
    _expect(usage.exit, 0, contender, usage.log)
    requests = registry.requests(mark)
    return Sample(contender, pair.size_mb, rnd, usage.wall_s, usage.cpu_s, usage.self_mb, None,
                  usage.children_rusage_mb, fetched_bytes=registry.blob_bytes_served(mark),
                  registry_requests=len(requests),
                  manifest_requests=sum("/manifests/" in r.path for r in requests))


def quick_series(m: Machine, pair: Pair, rnd: int, reps: int) -> list[Sample]:
    """The sub-second contenders, interleaved: no-op pinned, no-op tag, python, skopeo inspect.

    After one untimed warm-up of each, `reps` rounds run them in turn (reversed every other
    round), so background noise lands on all of them alike.
    """
    python = [sys.executable, "-c", "pass"]
    inspect = ["skopeo", "inspect", "--raw", "--tls-verify=false",
               f"docker://{pair.v2.reference}"]

    def pinned(name: str) -> Sample:
        return _noop(m, pair, rnd, contender="reconcile_noop_pinned", image=pair.v2.by_digest,
                     name=name)

    def tag(name: str) -> Sample:
        return _noop(m, pair, rnd, contender="reconcile_noop_tag", image=pair.v2.reference,
                     name=name)

    def python_pass(name: str) -> Sample:
        del name
        return Sample("python_pass", pair.size_mb, rnd, run_quick(python))

    def skopeo_inspect(name: str) -> Sample:
        del name
        return Sample("skopeo_inspect", pair.size_mb, rnd, run_quick(inspect))

    order = [pinned, tag, python_pass, skopeo_inspect]
    for contender in order:
        contender("warmup")
    samples = []
    for rep in range(reps):
        for contender in order if rep % 2 == 0 else reversed(order):
            samples.append(contender(f"quick-{rnd}-{rep}"))
    return samples


# -- correctness ----------------------------------------------------------------------------

def check_tree(world: World, disk: SandboxDisk, pair: Pair) -> list[str]:
    """Install v1 with reconcile and with the floor's GNU tar on one disk; list differences.

    v1 has no whiteouts, so GNU tar's result is the tree an OCI runtime would make.
    """
    from reconciler.sandbox.trees import compare_trees  # noqa: PLC0415 - only used here

    m = machine(world, disk, f"check-{pair.size_mb}")
    m.world.write_config(m.config, pair.v1.reference)
    usage = run_measured(m.args(), m.scratch, name="check", sample=False)
    _expect(usage.exit, 2, "tree check", usage.log)
    floor(world, disk, pair, -1)
    with disk.mount("COS_STATE", readonly=True) as state, \
            disk.mount_image(state / "cOS" / "floor.img") as expected, \
            disk.mount_image(state / "cOS" / "active.img") as actual:
        found = compare_trees(expected, actual)
    return [d for d in found if not d.startswith("lost+found")]
