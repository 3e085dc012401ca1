"""licensing-core over TCP with mutual TLS: the gateway works through it, and a gateway
without a client certificate from the trusted CA is refused."""

import socket
import subprocess
import time

import pytest
import requests

from support import FAST_ARGON2, new_password, new_username


def openssl(*arguments, cwd):
    subprocess.run(["openssl", *arguments], cwd=cwd, check=True, capture_output=True)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=directory)


def make_leaf(directory, ca, name, usage, san=None):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    extensions = directory / f"{name}.ext"
    lines = ["basicConstraints=critical,CA:FALSE", f"extendedKeyUsage={usage}"]
    if san:
        lines.append(f"subjectAltName={san}")
    extensions.write_text("\n".join(lines) + "\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", extensions.name, cwd=directory)


def shared_database(work_dir):
    """The SQLite database that the TCP core and the gateways in this file share."""
    return f"sqlite://{(work_dir / 'mtls.db').resolve()}"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def pki(work_dir):
    directory = work_dir / "mtls-pki"
    directory.mkdir()
    make_ca(directory, "internal-ca")
    make_ca(directory, "rogue-ca")
    make_leaf(directory, "internal-ca", "core", "serverAuth", "IP:127.0.0.1")
    make_leaf(directory, "internal-ca", "gateway-client", "clientAuth")
    make_leaf(directory, "rogue-ca", "rogue-client", "clientAuth")
    return directory


@pytest.fixture(scope="module")
def tcp_core(work_dir, bin_dir, pki):
    port = free_port()
    data = work_dir / "mtls-core"
    log = open(work_dir / "mtls-core.log", "ab")
    core = subprocess.Popen([str(bin_dir / "licensing-core"), "--data-dir", str(data),
                             "--database", shared_database(work_dir), "--listen", f"127.0.0.1:{port}", "--tls-cert", str(pki / "core.pem"),
                             "--tls-key", str(pki / "core.key"), "--tls-client-ca", str(pki / "internal-ca.pem")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def listening():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    assert wait_for(listening, 30), (work_dir / "mtls-core.log").read_text()
    yield port
    core.terminate()
    try:
        core.wait(10)
    except subprocess.TimeoutExpired:
        core.kill()
        core.wait()


def start_gateway(work_dir, bin_dir, name, core_port, client_arguments):
    directory = work_dir / name
    directory.mkdir()
    port_file = directory / "port"
    log_path = directory / "gateway.log"
    log = open(log_path, "ab")
    gateway = subprocess.Popen([str(bin_dir / "licensing-gateway"), "--core", f"127.0.0.1:{core_port}",
                                *client_arguments, "--database", shared_database(work_dir),
                                "--tls-from-core", str(directory / "tls"), "--port", "0", "--port-file",
                                str(port_file), *FAST_ARGON2],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    wait_for(lambda: port_file.exists() or gateway.poll() is not None, 30)
    return gateway, directory, log_path


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_gateway_through_mtls_core(work_dir, bin_dir, pki, tcp_core):
    gateway, directory, log_path = start_gateway(
        work_dir, bin_dir, "mtls-gateway", tcp_core,
        ["--core-tls-ca", str(pki / "internal-ca.pem"), "--core-tls-cert", str(pki / "gateway-client.pem"),
         "--core-tls-key", str(pki / "gateway-client.key")])
    try:
        assert gateway.poll() is None, log_path.read_text()
        url = f"https://127.0.0.1:{(directory / 'port').read_text().strip()}"
        session = requests.Session()
        # Without this, REQUESTS_CA_BUNDLE in the environment would replace the CA below.
        session.trust_env = False
        session.verify = str(directory / "tls" / "ca.pem")
        assert wait_for(lambda: session.get(url + "/readyz", timeout=5).status_code == 200, 30)

        username, password = new_username("mtls"), new_password()
        created = session.post(url + "/v1/users", json={"username": username, "password": password}, timeout=30)
        assert created.status_code == 201, created.text
        login = session.post(url + "/v1/sessions", json={"username": username, "password": password}, timeout=30)
        assert login.status_code == 200, login.text
        me = session.get(url + "/v1/users/me", headers={"Authorization": "Bearer " + login.json()["access_token"]},
                         timeout=30)
        assert me.status_code == 200, me.text
        assert me.json()["username"] == username
    finally:
        stop(gateway)


def test_rogue_client_certificate_refused(work_dir, bin_dir, pki, tcp_core):
    gateway, _, log_path = start_gateway(
        work_dir, bin_dir, "rogue-gateway", tcp_core,
        ["--core-tls-ca", str(pki / "internal-ca.pem"), "--core-tls-cert", str(pki / "rogue-client.pem"),
         "--core-tls-key", str(pki / "rogue-client.key")])
    try:
        # The gateway needs the core for its own certificate, so it cannot start.
        assert wait_for(lambda: gateway.poll() is not None, 30), "a gateway with a rogue certificate kept running"
        assert gateway.returncode == 1
        assert "did not issue the gateway certificate" in log_path.read_text()
    finally:
        stop(gateway)


def test_tcp_core_without_client_tls_refused(work_dir, bin_dir, tcp_core):
    gateway, _, log_path = start_gateway(work_dir, bin_dir, "plain-gateway", tcp_core, [])
    try:
        assert wait_for(lambda: gateway.poll() is not None, 30)
        assert gateway.returncode == 1
        assert "requires --core-tls-ca, --core-tls-cert and --core-tls-key" in log_path.read_text()
    finally:
        stop(gateway)


def test_tcp_core_requires_tls_files(work_dir, bin_dir):
    result = subprocess.run([str(bin_dir / "licensing-core"), "--data-dir", str(work_dir / "mtls-missing"),
                             "--database", f"sqlite://{(work_dir / 'mtls-missing.db').resolve()}",
                             "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "requires --tls-cert, --tls-key and --tls-client-ca" in result.stderr
