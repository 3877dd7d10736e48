"""`make demo`: the main job on a self-made sandbox (disk image, local registry, signed images).

Reconciles a fresh cOS disk to v1, then to v2, prints `reconcile status`, and shows that one
more run changes nothing. Everything it creates is removed at the end.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from reconciler import logs
from reconciler.sandbox import gpg
from reconciler.sandbox.disk import SandboxDisk, fake_host_root
from reconciler.sandbox.images import ImageFactory
from reconciler.sandbox.registry import Registry
from reconciler.tools._run import run

RECONCILE = str(Path(sys.executable).parent / "reconcile")


class DemoFailed(Exception):
    """A demo step did not behave as documented."""


def _reconcile(host_root: Path, disk: str, *args: str, expect: int = 0) -> str:
    argv = [RECONCILE, "--host-root", str(host_root), "--disk", disk, *args]
    print(f"\n$ reconcile {shlex.join(args)}", flush=True)
    res = run(argv, accept=range(256))
    print(res.text.rstrip(), flush=True)
    if res.returncode != expect:
        print(res.stderr.decode(errors="replace"), file=sys.stderr)
        raise DemoFailed(f"'reconcile {shlex.join(args)}' exited {res.returncode}, "
                         f"expected {expect}")
    return res.text


def _config(image: str, key: gpg.GpgKey, factory: ImageFactory, host: str) -> str:
    return json.dumps({
        "reconciler_format": 1,
        "system": {"image": image},
        "verification": {"gpg": {"keys": [str(key.public_key)],
                                 "lookaside": f"file://{factory.sigstore}"}},
        "registry": {"insecure": [host]},
    }, indent=2)


def main() -> int:
    logs.configure()
    work = Path(tempfile.mkdtemp(prefix="cos-reconciler-demo-", dir="/var/tmp"))
    try:
        print("Building the sandbox: GPG key, registry on loopback, signed images, cOS disk…",
              flush=True)
        key = gpg.make_key(work / "gpg", name="cos-reconciler demo")
        with Registry(work / "registry") as registry, \
                SandboxDisk(work / "disk", state_mib=512, persistent_mib=256) as disk:
            factory = ImageFactory(work / "images", registry.host)
            v1, v2 = factory.build_pair("cos/system", key=key)
            gpg.stop_agent(key)
            host_root = fake_host_root(work / "host", mode="active")
            config = host_root / "oem/upgrade.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            print(f"registry {registry.host}; disk {disk.device} "
                  f"({', '.join(f'{k}={v}' for k, v in sorted(disk.partitions.items()))})")

            config.write_text(_config(v1.reference, key, factory, registry.host))
            print(f"\n# {config} now asks for {v1.reference}")
            _reconcile(host_root, disk.device, "status")
            _reconcile(host_root, disk.device, "plan", "--detailed-exitcode", expect=2)
            _reconcile(host_root, disk.device)

            config.write_text(_config(v2.reference, key, factory, registry.host))
            print(f"\n# {config} now asks for {v2.reference}")
            _reconcile(host_root, disk.device, "plan")
            _reconcile(host_root, disk.device, "apply", "--detailed-exitcode", expect=2)
            _reconcile(host_root, disk.device, "status")
            out = _reconcile(host_root, disk.device, "apply", "--detailed-exitcode")
            if "No changes" not in out:
                raise DemoFailed("the last run should have changed nothing")
        print("\nDemo complete: v1 then v2 installed, v1 kept as passive, the last run was "
              "a no-op.")
        return 0
    except DemoFailed as err:
        print(f"demo failed: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
