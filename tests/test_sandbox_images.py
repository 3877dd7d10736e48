"""The sandbox image factory: layered, signed OS images whose expected trees are exact."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.errors import ToolFailed
from reconciler.sandbox.gpg import GpgKey, make_key
from reconciler.sandbox.images import BuiltImage, ImageFactory, compare_trees, policy_json
from reconciler.sandbox.registry import Registry
from reconciler.tools._run import Result, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (mknod, chown, setcap, a real registry)")


@dataclass(frozen=True)
class Pair:
    registry: Registry
    factory: ImageFactory
    key: GpgKey
    v1: BuiltImage
    v2: BuiltImage
    workdir: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("images")
    key = make_key(workdir)
    with Registry(workdir / "registry") as registry:
        factory = ImageFactory(workdir / "factory", registry.host)
        v1, v2 = factory.build_pair(key=key)
        yield Pair(registry, factory, key, v1, v2, workdir)


def _unpack(layout: Path, layers: tuple[str, ...], root: Path) -> None:
    """Apply layers like an overlay would: whiteouts and opaque dirs, then plain extraction."""
    root.mkdir()
    os.chmod(root, 0o755)
    for digest in layers:
        blob = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
        names = run(["tar", "-tzf", str(blob)]).text.splitlines()
        for name in names:
            path = os.path.normpath(os.path.join(root, name))
            base = os.path.basename(path)
            if base == ".wh..wh..opq":
                for child in Path(path).parent.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            elif base.startswith(".wh."):
                victim = os.path.join(os.path.dirname(path), base.removeprefix(".wh."))
                if os.path.isdir(victim) and not os.path.islink(victim):
                    shutil.rmtree(victim)
                else:
                    os.unlink(victim)
        run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpzf", str(blob),
             "-C", str(root), "--exclude=.wh.*"])


def _policy(pair: Pair, key: GpgKey) -> Path:
    path = pair.workdir / f"policy-{key.fingerprint[-8:]}.json"
    path.write_text(policy_json(pair.registry.host, key))
    return path


def _verified_copy(pair: Pair, reference: str, policy: Path, dest: Path) -> Result:
    return run(["skopeo", "--policy", str(policy), "--registries.d",
                str(pair.factory.registries_d), "copy", "--quiet", "--remove-signatures",
                "--src-tls-verify=false", f"docker://{reference}", f"oci:{dest}:x"],
               accept=range(256))


def test_v2_reuses_v1_layer_blobs(pair: Pair) -> None:
    """v2 is v1's two layer blobs, byte for byte, plus one new top layer."""
    assert len(pair.v1.layers) == 2
    assert pair.v2.layers[:2] == pair.v1.layers
    assert len(pair.v2.layers) == 3 and pair.v2.layers[2] not in pair.v1.layers
    assert pair.v2.layer_sizes[:2] == pair.v1.layer_sizes
    assert pair.v1.digest != pair.v2.digest


def test_digest_is_what_the_registry_serves(pair: Pair) -> None:
    """The recorded digest is the sha256 of the manifest the registry returns."""
    for image in (pair.v1, pair.v2):
        assert pair.factory.manifest_digest(image.reference) == image.digest
        assert image.by_digest == f"{pair.registry.host}/cos/system@{image.digest}"


def test_os_release_names_the_image(pair: Pair) -> None:
    """Each tree's /etc/os-release names its own repository and tag."""
    for image, version in ((pair.v1, "1"), (pair.v2, "2")):
        text = (image.tree / "etc/os-release").read_text()
        assert f'VERSION="{version}"' in text
        assert f'IMAGE_TAG="{image.tag}"' in text
        assert f'IMAGE="{image.repository}:{image.tag}"' in text


def test_base_has_awkward_entries(pair: Pair) -> None:
    """The base tree carries setuid, sticky, caps, xattrs, devices, fifos and hardlinks."""
    tree = pair.v1.tree
    assert os.lstat(tree / "usr/bin/su").st_mode & 0o7777 == 0o4755
    assert os.lstat(tree / "tmp").st_mode & 0o7777 == 0o1777
    assert os.lstat(tree / "var/mail").st_mode & 0o7777 == 0o2775
    assert os.lstat(tree / "root").st_mode & 0o7777 == 0o700
    assert os.getxattr(tree / "usr/bin/ping", "security.capability")
    assert os.getxattr(tree / "usr/share/doc/xattr.txt", "user.sandbox.origin") == b"base-layer"
    null = os.lstat(tree / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(tree / "usr/lib/sandbox/initctl").st_mode)
    assert os.lstat(tree / "usr/bin/gzip").st_ino == os.lstat(tree / "usr/bin/gunzip").st_ino
    assert os.readlink(tree / "bin") == "usr/bin"
    assert os.readlink(tree / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.lstat(tree / "home/user/.profile").st_uid == 1000
    assert os.lstat(tree / "etc/machine-id").st_size == 0


def test_v2_tree_applies_whiteout_and_opaque_dir(pair: Pair) -> None:
    """v2 deletes legacy.txt, replaces /etc/skel wholesale, changes motd, adds a tool."""
    tree = pair.v2.tree
    assert not (tree / "usr/share/doc/legacy.txt").exists()
    assert sorted(p.name for p in (tree / "etc/skel").iterdir()) == [".bashrc"]
    assert "version 2" in (tree / "etc/motd").read_text()
    assert (tree / "usr/bin/sandbox-tool").exists()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_layers_unpack_to_expected_tree(pair: Pair, tmp_path: Path, version: str) -> None:
    """Unpacking the pushed layers in order (overlay rules) gives exactly the expected tree."""
    image = pair.v1 if version == "v1" else pair.v2
    _unpack(image.layout, image.layers, tmp_path / "root")
    assert compare_trees(image.tree, tmp_path / "root") == []


def test_signed_push_writes_lookaside_signature(pair: Pair) -> None:
    """A signed push stores one signature per image in the sigstore directory."""
    for image in (pair.v1, pair.v2):
        assert image.signed_by == pair.key.fingerprint
        assert len(pair.factory.signatures(image)) == 1


def test_signed_image_passes_signed_by_policy(pair: Pair, tmp_path: Path) -> None:
    """skopeo with a signedBy policy accepts v1 pinned by digest."""
    result = _verified_copy(pair, pair.v1.by_digest, _policy(pair, pair.key), tmp_path / "o")
    assert result.returncode == 0, result.stderr.decode()


def test_unsigned_push_is_refused_by_policy(pair: Pair, tmp_path: Path) -> None:
    """The same image pushed unsigned elsewhere is refused by the signedBy policy."""
    unsigned = pair.factory.push(pair.v1, f"{pair.registry.host}/cos/unsigned:v1")
    assert unsigned.digest == pair.v1.digest and unsigned.signed_by is None
    result = _verified_copy(pair, unsigned.by_digest, _policy(pair, pair.key), tmp_path / "o")
    assert result.returncode != 0
    assert b"signature" in result.stderr


def test_image_signed_by_other_key_is_refused(pair: Pair, tmp_path: Path) -> None:
    """An image signed by a key the policy does not trust is refused."""
    other = make_key(tmp_path, "intruder")
    pushed = pair.factory.push(pair.v1, f"{pair.registry.host}/cos/other:v1", other)
    assert pushed.signed_by == other.fingerprint
    result = _verified_copy(pair, pushed.by_digest, _policy(pair, pair.key), tmp_path / "o")
    assert result.returncode != 0


def test_sign_adds_a_second_signature(pair: Pair, tmp_path: Path) -> None:
    """`sign` adds a signature that a policy trusting only that key accepts."""
    image = pair.factory.push(pair.v1, f"{pair.registry.host}/cos/cosigned:v1")
    other = make_key(tmp_path, "second signer")
    pair.factory.sign(image, other)
    pair.factory.sign(image, pair.key)
    assert len(pair.factory.signatures(image)) == 2
    result = _verified_copy(pair, image.by_digest, _policy(pair, other), tmp_path / "o")
    assert result.returncode == 0, result.stderr.decode()


def test_no_gpg_agent_left_running(pair: Pair) -> None:
    """Signing leaves no gpg-agent behind for the test keyring."""
    result = run(["pgrep", "-f", f"gpg-agent --homedir {pair.key.home}"], accept=(0, 1))
    assert result.text.strip() == ""


def test_base_layer_is_reproducible(pair: Pair, tmp_path: Path) -> None:
    """Building again (other repository, same registry) yields the same base layer digest."""
    factory = ImageFactory(tmp_path / "factory", pair.registry.host)
    v1, _ = factory.build_pair("cos/again", key=None)
    assert v1.layers[0] == pair.v1.layers[0]


def test_filler_goes_into_base_layer(pair: Pair, tmp_path: Path) -> None:
    """Filler files land in the base layer and make it about that much larger."""
    factory = ImageFactory(tmp_path / "factory", pair.registry.host)
    v1, v2 = factory.build_pair("cos/filled", key=None, filler_files=4, filler_bytes=400_000)
    files = sorted((v1.tree / "usr/share/filler").iterdir())
    assert len(files) == 4 and sum(f.stat().st_size for f in files) == 400_000
    assert v1.layer_sizes[0] > 400_000
    assert v2.layers[0] == v1.layers[0]


def test_push_to_authenticated_tls_registry(tmp_path: Path) -> None:
    """Images can be pushed to a TLS registry that requires a login (via its auth file)."""
    with Registry(tmp_path / "registry", tls=True, htpasswd=("alice", "s3cret")) as registry:
        assert registry.auth_file is not None and registry.ca_dir is not None
        factory = ImageFactory(tmp_path / "factory", registry.host, authfile=registry.auth_file)
        v1, _ = factory.build_pair(key=None)
        raw = run(["skopeo", "inspect", "--raw", "--cert-dir", str(registry.ca_dir),
                   "--authfile", str(registry.auth_file), f"docker://{v1.reference}"]).stdout
        assert json.loads(raw)["layers"][0]["digest"] == v1.layers[0]
        with pytest.raises(ToolFailed):
            run(["skopeo", "inspect", "--raw", "--cert-dir", str(registry.ca_dir),
                 "--no-creds", f"docker://{v1.reference}"])


def test_compare_identical_copy(pair: Pair, tmp_path: Path) -> None:
    """A `cp -a` copy of a tree compares equal."""
    run(["cp", "-a", str(pair.v2.tree), str(tmp_path / "copy")])
    assert compare_trees(pair.v2.tree, tmp_path / "copy") == []


def test_compare_catches_differences(pair: Pair, tmp_path: Path) -> None:
    """compare_trees reports mode, xattr, hardlink, content, mtime and path differences."""
    copy = tmp_path / "copy"
    run(["cp", "-a", str(pair.v1.tree), str(copy)])
    os.chmod(copy / "usr/bin/su", 0o755)
    os.removexattr(copy / "usr/bin/ping", "security.capability")
    os.unlink(copy / "usr/bin/gunzip")
    shutil.copy2(copy / "usr/bin/gzip", copy / "usr/bin/gunzip")
    (copy / "etc/hostname").write_text("other\n")
    os.utime(copy / "etc/machine-id", (1, 1))
    (copy / "lost+found").mkdir()
    (copy / "etc/extra").write_text("x")
    os.unlink(copy / "etc/motd")
    diffs = compare_trees(pair.v1.tree, copy)
    text = "\n".join(diffs)
    assert "usr/bin/su: mode 0o100755, expected 0o104755" in text
    assert "usr/bin/ping: xattrs" in text
    assert "usr/bin/gunzip: hardlinked with [], expected ['usr/bin/gzip']" in text
    assert "etc/hostname: size" in text
    assert "etc/machine-id: mtime 1" in text
    assert "etc/extra: unexpected" in text
    assert "etc/motd: missing" in text
    assert "lost+found" not in text
