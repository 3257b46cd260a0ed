"""#16.3: HTTPS to Nova with Neutron's options, against a local TLS server and its own CA."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mdtool.agent.handler import AgentHandler
from mdtool.agent.index import PortIndex
from mdtool.agent.upstream import problems, ssl_context, upstream_pool
from mdtool.config import Config
from mdtool.errors import BadInput
from mdtool.http.client import UpstreamTLSError
from mdtool.http.types import Request
from tests.unit.test_agent import NET, SECRET, VM1, ports

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", cwd=d)


def _leaf(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def make_pki(d: Path) -> Path:
    """nova-ca signs Nova's certificate and the agent's; other-ca signs nothing we use."""
    _ca(d, "nova-ca")
    _ca(d, "other-ca")
    _leaf(d, "nova", "nova-ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                "extendedKeyUsage=serverAuth")
    _leaf(d, "agent", "nova-ca", "extendedKeyUsage=clientAuth")
    return d


class TlsNova:
    """An HTTPS server that answers 200 with the instance id and the client's CN."""

    def __init__(self, pki: Path, require_client_cert: bool = False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki / "nova.pem", pki / "nova.key")
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(pki / "nova-ca.pem")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                peer = self.connection.getpeercert() or {}
                cn = dict(x[0] for x in peer.get("subject", ())).get("commonName", "")
                body = json.dumps({"uuid": self.headers.get("X-Instance-ID"),
                                   "client": cn}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                pass  # a refused handshake is the point of some tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nova(pki):
    servers = []

    def start(**kw) -> TlsNova:
        servers.append(TlsNova(pki, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def config(tmp_path, port: int | None = None, **opts) -> Config:
    env = {"MDTOOL_NOVA_METADATA_HOST": "localhost", "MDTOOL_NOVA_METADATA_PROTOCOL": "https",
           "MDTOOL_NOVA_METADATA_PORT": str(port or 1)}
    env.update({f"MDTOOL_{k.upper()}": str(v) for k, v in opts.items()})
    return Config(state_dir=str(tmp_path), environ=env)


def ask(cfg: Config):
    """One instance request through the agent's handler, to the configured Nova."""
    async def main():
        pool = upstream_pool(cfg, connect_timeout=5, read_timeout=5)
        try:
            handler = AgentHandler(lambda: PortIndex(ports()), pool, SECRET)
            return await handler.handle(Request(
                "GET", "/openstack/latest/meta_data.json",
                [("X-Neutron-Network-ID", NET), ("X-Forwarded-For", "172.17.17.11")]))
        finally:
            await pool.close()

    return asyncio.run(main())


def test_valid_ca(tmp_path, pki, nova):
    n = nova()
    resp = ask(config(tmp_path, n.port, auth_ca_cert=pki / "nova-ca.pem"))
    assert resp.status == 200 and json.loads(resp.body)["uuid"] == VM1


def test_wrong_ca_is_a_clear_error_and_5xx(tmp_path, pki, nova, caplog):
    n = nova()
    resp = ask(config(tmp_path, n.port, auth_ca_cert=pki / "other-ca.pem"))
    assert resp.status == 503
    assert "its certificate is not trusted" in caplog.text and "auth_ca_cert" in caplog.text

    async def direct():
        pool = upstream_pool(config(tmp_path, n.port, auth_ca_cert=pki / "other-ca.pem"))
        try:
            await pool.request("GET", "/")
        finally:
            await pool.close()

    with pytest.raises(UpstreamTLSError, match="unable to get local issuer certificate"):
        asyncio.run(direct())


def test_system_cas_do_not_trust_a_private_ca(tmp_path, nova):
    n = nova()
    assert ask(config(tmp_path, n.port)).status == 503


def test_insecure_skips_the_check(tmp_path, pki, nova):
    n = nova()
    resp = ask(config(tmp_path, n.port, nova_metadata_insecure="true",
                      auth_ca_cert=pki / "other-ca.pem"))
    assert resp.status == 200 and json.loads(resp.body)["uuid"] == VM1


def test_client_certificate_required_by_nova(tmp_path, pki, nova, caplog):
    n = nova(require_client_cert=True)
    resp = ask(config(tmp_path, n.port, auth_ca_cert=pki / "nova-ca.pem",
                      nova_client_cert=pki / "agent.pem", nova_client_priv_key=pki / "agent.key"))
    assert resp.status == 200 and json.loads(resp.body) == {"uuid": VM1, "client": "agent"}
    # without one: Nova ends the connection, the instance gets a 5xx
    resp = ask(config(tmp_path, n.port, auth_ca_cert=pki / "nova-ca.pem"))
    assert resp.status == 503


@pytest.mark.parametrize("opts, expected", [
    ({"MDTOOL_NOVA_METADATA_PROTOCOL": "https"}, "needs nova_metadata_host"),
    ({"MDTOOL_NOVA_METADATA_PROTOCOL": "https", "MDTOOL_NOVA_METADATA_URL": "http://nova:8775"},
     "is http://: say https:// there"),
    ({"MDTOOL_NOVA_METADATA_HOST": "nova", "MDTOOL_NOVA_CLIENT_CERT": "/x.pem"},
     "nova_client_cert (env MDTOOL_NOVA_CLIENT_CERT) is set without nova_client_priv_key"),
    ({"MDTOOL_NOVA_METADATA_URL": "https://nova", "MDTOOL_AUTH_CA_CERT": "/nonexistent.pem"},
     "auth_ca_cert (env MDTOOL_AUTH_CA_CERT): /nonexistent.pem does not exist"),
])
def test_combinations_that_cannot_work(tmp_path, opts, expected):
    cfg = Config(state_dir=str(tmp_path), environ=opts)
    (msg,) = problems(cfg)
    assert expected in msg
    with pytest.raises(BadInput, match=expected.split(" (")[0]):
        ssl_context(cfg)


def test_files_that_are_not_what_they_claim(tmp_path, pki):
    cfg = config(tmp_path, auth_ca_cert=pki / "nova.ext")
    assert "no CA certificate in" in problems(cfg)[0]
    cfg = config(tmp_path, auth_ca_cert=pki / "nova-ca.pem", nova_client_cert=pki / "agent.pem",
                 nova_client_priv_key=pki / "nova.key")
    assert "not a certificate and its key" in problems(cfg)[0]


def test_http_and_local_need_no_tls(tmp_path):
    assert problems(Config(state_dir=str(tmp_path), environ={})) == []
    assert ssl_context(Config(state_dir=str(tmp_path),
                              environ={"MDTOOL_NOVA_METADATA_HOST": "nova"})) is None


def test_agent_process_starts_with_https_and_forwards(tmp_path, pki, nova):
    """Before: `agent run` died at start (UpstreamPool rejected https://)."""
    from tests.unit.test_agent_daemon import _http, _spawn, _stop, _wait_connect
    from tests.unit.test_metadata_service import IID, NET as MD_NET

    n = nova()
    env = dict(os.environ, MDTOOL_METADATA_PROXY_SHARED_SECRET=SECRET,
               MDTOOL_NOVA_METADATA_URL=f"https://localhost:{n.port}",
               MDTOOL_AUTH_CA_CERT=str(pki / "nova-ca.pem"))
    env.pop("MDTOOL_CONFIG", None)
    agent = _spawn("agent", tmp_path, env)
    try:
        _wait_connect(socket.AF_UNIX, str(tmp_path / "metadata_proxy"), agent)
        status, body = _http(socket.AF_UNIX, str(tmp_path / "metadata_proxy"),
                             "GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\n"
                             f"X-Neutron-Network-ID: {MD_NET}\r\n"
                             "X-Forwarded-For: 172.17.17.11\r\nConnection: close\r\n")
        assert status == 200 and json.loads(body)["uuid"] == IID
        rc, err = _stop(agent)
        assert rc == 0, err
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
