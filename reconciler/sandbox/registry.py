"""A real Docker registry (Debian's docker-registry) on loopback, with its request log parsed."""

from __future__ import annotations

import atexit
import base64
import json
import re
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from reconciler.errors import ToolFailed
from reconciler.sandbox._tls import make_server_cert
from reconciler.tools._run import Background, run

START_TIMEOUT = 15.0
_SYNC = "sandbox-sync="
_IN_USE = "address already in use"
# gorilla/handlers combined log format, as written with `log.accesslog.disabled: false`
_ACCESS = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)')
_BLOB = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class RegistryRequest:
    """One request the registry answered: method, request URI, status, body bytes written."""

    method: str
    uri: str
    status: int
    written: int

    @property
    def path(self) -> str:
        """The URI without its query string."""
        return self.uri.split("?", 1)[0]

    @property
    def blob(self) -> str | None:
        """The digest if this is a blob request, else None."""
        match = _BLOB.match(self.path)
        return match[1] if match else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Registry:
    """`docker-registry serve` on 127.0.0.1:<free port>, storage and log under `workdir`.

    A context manager; `stop()`/`start()` can also be used inside it to simulate an outage
    (the port and the stored images are kept). With `tls`, it serves HTTPS with a fresh CA
    (`ca_cert`, and `ca_dir` for skopeo's `--cert-dir`); with `htpasswd=(user, password)`
    it requires basic auth, and `auth_file` is a containers auth.json holding the login.
    """

    def __init__(self, workdir: Path, *, tls: bool = False,
                 htpasswd: tuple[str, str] | None = None, port: int | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.port = port or _free_port()
        self._port_chosen = port is None
        self.storage = self.workdir / "storage"
        self.log_path = self.workdir / "registry.log"
        self.config_path = self.workdir / "config.yml"
        self.ca_cert: Path | None = None
        self.ca_dir: Path | None = None
        self.auth_file: Path | None = None
        self._server: tuple[Path, Path] | None = None
        self._htpasswd = htpasswd
        self._proc: Background | None = None
        self._syncs = 0

    @property
    def host(self) -> str:
        """"127.0.0.1:PORT", as used in image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Registry:
        try:
            self._prepare()
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _prepare(self) -> None:
        """Make what survives restarts: storage, TLS material, the htpasswd file."""
        self.storage.mkdir(exist_ok=True)
        if self.tls:
            cert = make_server_cert(self.workdir / "tls")
            self._server = (cert.cert, cert.key)
        if self._htpasswd:
            user, password = self._htpasswd
            line = run(["htpasswd", "-Bbn", user, password]).text.strip()
            (self.workdir / "htpasswd").write_text(line + "\n")

    def _write_client_files(self) -> None:
        """The CA directory and auth.json for clients; both are keyed by host:port."""
        if self._server:
            self.ca_dir = self.workdir / "certs.d" / self.host
            self.ca_dir.mkdir(parents=True, exist_ok=True)
            self.ca_cert = self.ca_dir / "ca.crt"
            self.ca_cert.write_bytes((self.workdir / "tls" / "ca.crt").read_bytes())
        if self._htpasswd:
            user, password = self._htpasswd
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.auth_file = self.workdir / "auth.json"
            self.auth_file.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))

    def _write_config(self) -> None:
        http: dict[str, object] = {"addr": self.host, "secret": secrets.token_hex(16)}
        if self._server:
            http["tls"] = {"certificate": str(self._server[0]), "key": str(self._server[1])}
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": http,
        }
        if self._htpasswd:
            config["auth"] = {"htpasswd": {"realm": "cos-sandbox",
                                           "path": str(self.workdir / "htpasswd")}}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self) -> None:
        """Start the server (again) and wait until it answers GET /v2/."""
        if self._proc and self._proc.alive():
            return
        for attempt in range(3):
            try:
                self._launch()
                self._port_chosen = False  # references now name this port: keep it
                return
            except ToolFailed as err:
                # The free port was taken by someone else between choosing and binding it.
                if not (self._port_chosen and attempt < 2 and _IN_USE in err.stderr):
                    raise
                self.port = _free_port()

    def _launch(self) -> None:
        self._write_config()
        self._write_client_files()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = Background(["docker-registry", "serve", str(self.config_path)],
                                log_path=self.log_path)
        atexit.register(self.stop)
        try:
            self._wait_up(offset)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server if it runs; idempotent."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        atexit.unregister(self.stop)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    def ping(self) -> int:
        """HTTP status of GET /v2/ (200, or 401 with htpasswd); OSError if nobody answers."""
        return self._get("/v2/")

    def _context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca_cert)) if self.ca_cert else None

    def _get(self, path: str) -> int:
        """Status of GET `path` (any HTTP answer counts); raises OSError if nobody answers."""
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # never via an http_proxy from the environment
            urllib.request.HTTPSHandler(context=self._context()))
        try:
            with opener.open(self.url + path, timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return err.code

    def _wait_up(self, offset: int) -> None:
        """Wait for our process to log that it listens, then for GET /v2/ to answer."""
        listening = f"listening on {self.host}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not self.alive():
                raise self._failed("docker-registry exited during start-up", offset)
            if listening in self._log_text(offset):
                try:
                    self._get("/v2/")
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise self._failed(f"docker-registry did not answer within "
                                   f"{START_TIMEOUT:.0f} s", offset)
            time.sleep(0.05)

    def _failed(self, message: str, offset: int = 0) -> ToolFailed:
        tail = "\n".join(self._log_text(offset).splitlines()[-20:])
        argv = ["docker-registry", "serve", str(self.config_path)]
        return ToolFailed(f"{message} (log {self.log_path}):\n{tail}", argv=argv,
                          returncode=-1, stderr=tail,
                          hint="check that docker-registry is installed and the port is free")

    # -- the request log ----------------------------------------------------------------

    def _log_text(self, offset: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(offset)
                return log_file.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _parse(self) -> list[RegistryRequest]:
        out = []
        for line in self._log_text().splitlines():
            match = _ACCESS.match(line)
            if match:
                written = 0 if match[4] == "-" else int(match[4])
                out.append(RegistryRequest(match[1], match[2], int(match[3]), written))
        return out

    def _settle(self) -> None:
        """Wait until every request answered so far is in the log (via a marker request)."""
        if not self.alive():
            return
        self._syncs += 1
        marker = f"/v2/?{_SYNC}{self._syncs}"
        self._get(marker)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(r.uri == marker for r in self._parse()):
                return
            time.sleep(0.02)

    def requests(self, since: int = 0) -> list[RegistryRequest]:
        """Requests answered so far (in log order), skipping the first `since` (see `mark`)."""
        self._settle()
        return [r for r in self._parse() if _SYNC not in r.uri][since:]

    def mark(self) -> int:
        """A position in the request log; pass it as `since` to see only later requests."""
        return len(self.requests())

    def blob_gets(self, since: int = 0) -> list[str]:
        """Digests of blobs served by successful GET requests (one entry per request)."""
        return [r.blob for r in self.requests(since)
                if r.method == "GET" and r.blob and 200 <= r.status < 300]

    def blob_bytes_served(self, since: int = 0) -> int:
        """Total body bytes of successful blob GET responses."""
        return sum(r.written for r in self.requests(since)
                   if r.method == "GET" and r.blob and 200 <= r.status < 300)

    # -- storage ------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """The file holding blob `sha256:...` in the registry's storage."""
        hexdigest = digest.removeprefix("sha256:")
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest
                / "data")

    def corrupt_blob(self, digest: str, data: bytes | None = None) -> None:
        """Overwrite a stored blob: with `data`, or (default) by flipping 64 bytes in the
        middle, keeping its size, so only a digest check can notice."""
        path = self.blob_path(digest)
        if not path.exists():
            raise FileNotFoundError(f"registry stores no blob {digest} ({path})")
        if data is not None:
            path.write_bytes(data)
            return
        size = path.stat().st_size
        with open(path, "r+b") as blob:
            start = max(0, size // 2 - 32)
            blob.seek(start)
            chunk = blob.read(64)
            blob.seek(start)
            blob.write(bytes(b ^ 0xFF for b in chunk))
