"""Make a throw-away CA and a server certificate for 127.0.0.1/localhost with openssl."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.tools._run import run

_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca
[dn]
CN = cos-reconciler sandbox CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_SERVER_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = 127.0.0.1
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class ServerCert:
    """A CA certificate and the server key pair it signed."""

    ca_cert: Path
    cert: Path
    key: Path


def make_server_cert(directory: Path) -> ServerCert:
    """Create `directory` with ca.crt/ca.key and server.crt/server.key (valid two days)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_conf = directory / "ca.cnf"
    ca_conf.write_text(_CA_CONFIG)
    server_conf = directory / "server.cnf"
    server_conf.write_text(_SERVER_CONFIG)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_cert),
         "-days", "2", "-config", str(ca_conf)])
    run(["openssl", "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
         "-config", str(server_conf)])
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(server_conf),
         "-extensions", "server"])
    return ServerCert(ca_cert=ca_cert, cert=cert, key=key)
