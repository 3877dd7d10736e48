"""Build realistic layered OS images without docker, push (and sign) them with skopeo."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from reconciler.errors import ReconcileError
from reconciler.sandbox import content
from reconciler.sandbox.gpg import GpgKey, stop_agent
from reconciler.sandbox.oci import Layer, Manifest, OciLayout
from reconciler.sandbox.trees import compare_trees
from reconciler.tools._run import run

__all__ = ["BuiltImage", "ImageFactory", "compare_trees"]


@dataclass(frozen=True)
class BuiltImage:
    """An image as pushed to the sandbox registry, plus the root tree it must unpack to.

    `reference` is "HOST/REPO:TAG", `repository` is "HOST/REPO", `digest` the manifest
    digest as served by the registry; `layers`/`layer_sizes` are the compressed layer blobs
    (base first) and `config` the config blob; `layout` is the local OCI layout (tag `tag`)
    it was pushed from; `signed_by` the fingerprint of the key that signed this push.
    """

    reference: str
    repository: str
    tag: str
    digest: str
    tree: Path
    layers: tuple[str, ...]
    layer_sizes: tuple[int, ...]
    layout: Path
    diff_ids: tuple[str, ...] = ()
    config: str = ""
    signed_by: str | None = None

    @property
    def by_digest(self) -> str:
        """"HOST/REPO@sha256:..." - the pinned reference."""
        return f"{self.repository}@{self.digest}"

    @property
    def path(self) -> str:
        """The repository without the registry host, e.g. "cos/system"."""
        return self.repository.split("/", 1)[1]


def _split(reference: str) -> tuple[str, str]:
    match = re.fullmatch(r"(?P<repo>[^@]+?):(?P<tag>[\w][\w.-]{0,127})", reference)
    if not match or "/" not in match["repo"]:
        raise ValueError(f"expected HOST/REPO:TAG, got {reference!r}")
    return match["repo"], match["tag"]


class ImageFactory:
    """Builds, pushes and signs sandbox images for one registry.

    `build_pair` writes an OCI layout holding v1 (base + app layer) and v2 (the same two
    blobs + a top layer with a whiteout, an opaque directory, a changed and a new file),
    pushes both, and returns them with an independently built expected root tree each.

    Signatures go to the `sigstore` directory (a lookaside store, default `workdir/sigstore`);
    `registries_d` is the matching registries.d directory to pass to skopeo/the reconciler
    with `--registries.d`. `authfile` is used for registries that require a login.
    """

    def __init__(self, workdir: Path, registry_host: str, *, sigstore: Path | None = None,
                 authfile: Path | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = registry_host
        self.sigstore = Path(sigstore or self.workdir / "sigstore").resolve()
        self.sigstore.mkdir(parents=True, exist_ok=True)
        self.authfile = authfile
        self.registries_d = self.workdir / "registries.d"
        self.registries_d.mkdir(exist_ok=True)
        (self.registries_d / "sandbox.yaml").write_text(
            f"docker:\n  {self.host}:\n    lookaside: file://{self.sigstore}\n"
            f"    lookaside-staging: file://{self.sigstore}\n")
        self.push_policy = self.workdir / "push-policy.json"
        self.push_policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')

    # -- building -----------------------------------------------------------------------

    def build_pair(self, repo: str = "cos/system", *, key: GpgKey | None = None,
                   filler_files: int = 0, filler_bytes: int = 0,
                   ) -> tuple[BuiltImage, BuiltImage]:
        """Build and push `repo:v1` and `repo:v2` (signed by `key` if given).

        v2 reuses v1's two layer blobs byte for byte and adds one. `filler_files` files of
        about `filler_bytes` bytes in total of incompressible data go into the base layer.
        """
        images = self.workdir / "images"
        images.mkdir(exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix=repo.replace("/", "_") + "-", dir=images))
        repository = f"{self.host}/{repo}"
        layout = OciLayout(home / "oci")
        stage = home / "stage"
        try:
            staged_base = content.new_root(stage / "base")
            content.base(staged_base, filler_files=filler_files, filler_bytes=filler_bytes)
            staged_app = content.new_root(stage / "app")
            content.app(staged_app, repository)
            staged_top = content.new_root(stage / "top")
            content.top_staging(staged_top, repository)
            for tree in (staged_base, staged_app, staged_top):
                content.set_mtimes(tree)
            base = layout.add_layer(staged_base, "sandbox base system")
            app = layout.add_layer(staged_app, "sandbox application, os-release v1")
            top = layout.add_layer(staged_top, "sandbox v2 changes")
        finally:
            shutil.rmtree(stage, ignore_errors=True)

        tree_v1 = content.new_root(home / "tree-v1")
        content.base(tree_v1, filler_files=filler_files, filler_bytes=filler_bytes)
        content.app(tree_v1, repository)
        content.set_mtimes(tree_v1)
        tree_v2 = home / "tree-v2"
        run(["cp", "-a", str(tree_v1), str(tree_v2)])
        content.top_applied(tree_v2, repository)
        content.set_mtimes(tree_v2)

        built = []
        for tag, layers, tree in (("v1", [base, app], tree_v1), ("v2", [base, app, top],
                                                                  tree_v2)):
            labels = {"org.opencontainers.image.title": repo,
                      "org.opencontainers.image.version": tag}
            manifest = layout.add_image(tag, layers, labels=labels)
            image = _image(repository, tag, manifest, tree, layers=layers, layout=layout.path)
            built.append(self.push(image, key=key))
        return built[0], built[1]

    # -- pushing and signing ------------------------------------------------------------

    def push(self, image: BuiltImage, reference: str | None = None,
             key: GpgKey | None = None) -> BuiltImage:
        """Push `image` (from its OCI layout) to `reference` (default: its own), signed by `key`.

        Returns the image as seen at `reference`; the digest is checked against the registry.
        """
        reference = reference or image.reference
        repository, tag = _split(reference)
        argv = ["skopeo", "--policy", str(self.push_policy),
                "--registries.d", str(self.registries_d),
                "copy", "--quiet", "--dest-tls-verify=false"]
        if self.authfile:
            argv += ["--dest-authfile", str(self.authfile)]
        if key is not None:
            argv += ["--sign-by", key.fingerprint]
        argv += [f"oci:{image.layout}:{image.tag}", f"docker://{reference}"]
        try:
            run(argv, env=key.env if key else None)
        finally:
            if key is not None:
                stop_agent(key)
        served = self.manifest_digest(reference)
        if served != image.digest:
            raise ReconcileError(
                f"registry serves {reference} as {served}, but the pushed manifest is "
                f"{image.digest}", hint="skopeo rewrote the manifest; check the OCI layout")
        return replace(image, reference=reference, repository=repository, tag=tag,
                       signed_by=key.fingerprint if key else None)

    def manifest_digest(self, reference: str) -> str:
        """sha256 of the raw manifest the registry serves for `reference`."""
        argv = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
        if self.authfile:
            argv += ["--authfile", str(self.authfile)]
        raw = run([*argv, f"docker://{reference}"]).stdout
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    def sign(self, image: BuiltImage, key: GpgKey) -> Path:
        """Add a signature by `key` for `image` (as pushed) to the lookaside store.

        Use it to give an image a second signature (e.g. by an untrusted key) without
        pushing again. Returns the new signature file.
        """
        manifest = Path(image.layout) / "blobs" / "sha256" / image.digest.removeprefix("sha256:")
        directory = self.sigstore / f"{image.path}@{image.digest.replace(':', '=')}"
        directory.mkdir(parents=True, exist_ok=True)
        index = 1
        while (directory / f"signature-{index}").exists():
            index += 1
        target = directory / f"signature-{index}"
        try:
            run(["skopeo", "standalone-sign", "--output", str(target), str(manifest),
                 image.reference,
                 key.fingerprint], env=key.env)
        finally:
            stop_agent(key)
        return target

    def signatures(self, image: BuiltImage) -> list[Path]:
        """The signature files stored for `image` in the lookaside store."""
        directory = self.sigstore / f"{image.path}@{image.digest.replace(':', '=')}"
        return sorted(directory.glob("signature-*")) if directory.is_dir() else []


def _image(repository: str, tag: str, manifest: Manifest, tree: Path, *,
           layers: list[Layer], layout: Path) -> BuiltImage:
    return BuiltImage(
        reference=f"{repository}:{tag}", repository=repository, tag=tag,
        digest=manifest.digest, config=manifest.config,
        tree=tree, layers=tuple(layer.digest for layer in layers),
        layer_sizes=tuple(layer.size for layer in layers), layout=layout,
        diff_ids=tuple(layer.diff_id for layer in layers))


def policy_json(registry_host: str, key: GpgKey | None) -> str:
    """A containers policy.json: reject everything except `registry_host` images signed by
    `key` (or accept anything from it when `key` is None)."""
    requirement: dict[str, str] = (
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key.public_key)}
        if key else {"type": "insecureAcceptAnything"})
    return json.dumps({"default": [{"type": "reject"}],
                       "transports": {"docker": {registry_host: [requirement]}}}, indent=2)
