"""Run real licensing-core and licensing-gateway processes and talk to them.

Environment:
  LICENSING_BIN_DIR           directory with licensing-core, licensing-gateway, licensectl
                              (default: build/ci/bin, then build/e2e/bin of this checkout)
  LICENSING_TEST_DB           sqlite (default) or postgres
  LICENSING_TEST_PG_URL_FILE  for postgres: a file holding a postgresql:// URL of a role
                              that may create databases; each gateway gets a new database
"""

import json
import os
import pathlib
import secrets
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
import urllib.parse

import requests

from spec_check import OpenApiSpec

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT / "api" / "openapi.yaml"
BINARIES = ("licensing-core", "licensing-gateway", "licensectl")
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10

# Small Argon2id parameters keep the suite fast; the hash format is the same.
FAST_ARGON2 = ["--argon2-memory-kib", "8192", "--argon2-ops", "1"]


class ResponseLog:
    """Every response that the suite received, and every way one departed from the spec."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []  # (method, path, status)
        self.spec_failures = []
        self.crashes = []  # (test that ran before the crash was seen, description)

    def record(self, method, path, status, failure=None):
        with self.lock:
            self.entries.append((method, path, status))
            if failure:
                self.spec_failures.append(failure)


SPEC = OpenApiSpec(SPEC_PATH)
RESPONSES = ResponseLog()
RUNNING_STACKS = []


def check_response(method, path, status, headers, body):
    """Check one response against the spec, record it, and raise AssertionError on a mismatch."""
    try:
        SPEC.check(method, path, status, headers, body)
    except AssertionError as failure:
        RESPONSES.record(method, path, status, str(failure))
        raise
    RESPONSES.record(method, path, status)


class ApiClient(requests.Session):
    """A requests session bound to one gateway that checks every response against the spec."""

    def __init__(self, base_url, ca_bundle):
        super().__init__()
        self.base_url = base_url
        self.verify = str(ca_bundle)
        # Ignore proxy and CA bundle variables: they would replace `verify` or route loopback
        # requests elsewhere.
        self.trust_env = False

    def request(self, method, url, *args, **kwargs):
        if url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", 30)
        response = super().request(method, url, *args, **kwargs)
        path = urllib.parse.urlsplit(response.request.url).path
        headers = {name.lower(): value for name, value in response.headers.items()}
        check_response(method, path, response.status_code, headers, response.content)
        return response


class RawResponse:
    def __init__(self, status, headers, body, closed):
        self.status = status
        self.headers = headers  # lower-case names; repeated fields joined with ", "
        self.body = body
        self.closed = closed  # the server closed the connection after the response

    def json(self):
        return json.loads(self.body)


def read_raw_response(connection, deadline):
    """Read one HTTP/1.1 response with a Content-Length body from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        connection.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"the connection closed before a complete response head; received {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        connection.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def connection_closed(connection, wait_seconds=3.0):
    """True when the peer closes the connection within wait_seconds without sending more."""
    deadline = time.monotonic() + wait_seconds
    try:
        while time.monotonic() < deadline:
            connection.settimeout(max(0.1, deadline - time.monotonic()))
            if connection.recv(65536) == b"":
                return True
    except (socket.timeout, TimeoutError):
        return False
    except (ConnectionError, ssl.SSLError):
        return True
    return False


class Database:
    """Direct access to the gateway's database, for checks that the API cannot show."""

    def __init__(self, kind, url, sqlite_path=None):
        self.kind = kind
        self.url = url
        self.sqlite_path = sqlite_path

    def query(self, sql, params=()):
        """Run one statement with '?' placeholders and return all rows (an empty list for none)."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.sqlite_path, timeout=10) as connection:
                cursor = connection.execute(sql, params)
                rows = cursor.fetchall()
            connection.close()
            return rows
        import psycopg2

        connection = psycopg2.connect(self.url)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()


def find_binary_dir():
    configured = os.environ.get("LICENSING_BIN_DIR")
    candidates = [pathlib.Path(configured)] if configured else [REPO_ROOT / "build" / "ci" / "bin",
                                                                 REPO_ROOT / "build" / "e2e" / "bin"]
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in BINARIES):
            return directory
    raise RuntimeError(f"licensing-core, licensing-gateway and licensectl are not all built in "
                       f"{', '.join(map(str, candidates))}; build them or set LICENSING_BIN_DIR")


def backend_kind():
    kind = os.environ.get("LICENSING_TEST_DB", "sqlite")
    if kind not in ("sqlite", "postgres"):
        raise RuntimeError(f"LICENSING_TEST_DB is {kind!r}; expected sqlite or postgres")
    return kind


def create_postgres_database():
    """Create a new, empty database and return its URL."""
    import psycopg2

    url_file = os.environ.get("LICENSING_TEST_PG_URL_FILE")
    if not url_file:
        raise RuntimeError("LICENSING_TEST_DB=postgres needs LICENSING_TEST_PG_URL_FILE (the postgres ctest fixture sets it)")
    base_url = pathlib.Path(url_file).read_text().strip()
    name = f"e2e_{os.getpid()}_{secrets.token_hex(4)}"
    connection = psycopg2.connect(base_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    parts = urllib.parse.urlsplit(base_url)
    return parts._replace(path="/" + name).geturl(), base_url, name


def drop_postgres_database(base_url, name):
    import psycopg2

    connection = psycopg2.connect(base_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout, what, process_logs):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}\n{process_logs()}")


class Stack:
    """A licensing-core and a licensing-gateway in a private directory, on one database."""

    def __init__(self, root, bin_dir, name, gateway_args=(), core_args=()):
        self.root = pathlib.Path(root) / name
        self.bin_dir = pathlib.Path(bin_dir)
        self.name = name
        self.gateway_args = list(gateway_args)
        self.core_args = list(core_args)
        self.core_dir = self.root / "core"
        self.gateway_dir = self.root / "gw"
        self.socket_path = self.core_dir / "core.sock"
        self.ca_bundle = self.gateway_dir / "tls" / "ca.pem"
        self.core_log = self.root / "core.log"
        self.gateway_log = self.root / "gateway.log"
        self.processes = {}
        self.kind = backend_kind()
        self.postgres = None  # (base URL, database name) of a database to drop at stop
        self.port = None
        self.url = None
        self.database = None
        self.core_stopped_on_purpose = False

    def logs(self, lines=60):
        text = []
        for path in (self.core_log, self.gateway_log):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                text.append(f"--- {self.name}: {path.name} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "\n".join(text)

    def _spawn(self, name, arguments, log_path):
        log = open(log_path, "ab")
        try:
            self.processes[name] = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def _alive(self, name):
        return self.processes[name].poll() is None

    def start(self):
        self.core_dir.mkdir(parents=True)
        self.gateway_dir.mkdir(parents=True)
        if self.kind == "sqlite":
            sqlite_path = (self.gateway_dir / "licensing.db").resolve()
            self.database = Database("sqlite", f"sqlite://{sqlite_path}", sqlite_path)
        else:
            database_url, base_url, database_name = create_postgres_database()
            self.postgres = (base_url, database_name)
            self.database = Database("postgres", database_url)

        RUNNING_STACKS.append(self)
        # The core hands enclaves the gateway's CSR URL before the gateway runs, so the
        # gateway's port is chosen here and kept across restarts.
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._start_core()
        self._start_gateway()
        return self

    def _start_core(self):
        # --listen repeats the default address, so a stack starts even where the default is
        # broken; test_operations.py checks the default on its own.
        # Each stack draws enclave ports from its own block, so stacks on different
        # databases do not hand out the same port. The blocks lie between the ports the
        # core tests use (21000-22499) and the kernel's ephemeral range (from 32768).
        first_port = 23000 + (self.port % 90) * 100
        self._spawn("core", [str(self.bin_dir / "licensing-core"), "--data-dir", str(self.core_dir),
                             "--listen", f"unix:{self.socket_path}", "--database", self.database.url,
                             "--csr-url", f"{self.url}/v1/enclave-certificates",
                             "--enclave-port-range", f"{first_port}-{first_port + 99}", *self.core_args],
                    self.core_log)
        wait_until(lambda: self.socket_path.exists() or not self._alive("core"), START_TIMEOUT_SECONDS,
                   "licensing-core's socket", self.logs)
        if not self._alive("core"):
            raise RuntimeError(f"licensing-core exited with {self.processes['core'].returncode}\n{self.logs()}")

    def _start_gateway(self):
        port_file = self.gateway_dir / "port"
        port_file.unlink(missing_ok=True)
        self._spawn("gateway", [str(self.bin_dir / "licensing-gateway"), "--core", f"unix:{self.socket_path}",
                                "--database", self.database.url, "--tls-from-core", str(self.gateway_dir / "tls"),
                                "--port", str(self.port), "--port-file", str(port_file), *FAST_ARGON2,
                                *self._signup_limit(), *self.gateway_args],
                    self.gateway_log)
        wait_until(lambda: port_file.exists() or not self._alive("gateway"), START_TIMEOUT_SECONDS,
                   "licensing-gateway's port file", self.logs)
        if not self._alive("gateway"):
            raise RuntimeError(f"licensing-gateway exited with {self.processes['gateway'].returncode}\n{self.logs()}")
        assert int(port_file.read_text().strip()) == self.port

        def ready():
            try:
                with self.client() as client:
                    return client.get("/readyz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, START_TIMEOUT_SECONDS, f"GET {self.url}/readyz to answer 200", self.logs)

    def _signup_limit(self):
        # The suite signs up hundreds of users from 127.0.0.1; stacks that test the limit
        # pass their own.
        return [] if "--signup-limit" in self.gateway_args else ["--signup-limit", "1000000"]

    def restart_crashed(self):
        """Restart a server that died on its own, so one crash does not fail every later test.

        Returns a description of each crash, for test_recovery.py to report.
        """
        crashes = []
        if self.processes["core"].poll() is not None and not self.core_stopped_on_purpose:
            crashes.append(f"{self.name}: licensing-core exited with {self.processes['core'].returncode}")
            self.socket_path.unlink(missing_ok=True)
            self._start_core()
        if self.processes["gateway"].poll() is not None:
            crashes.append(f"{self.name}: licensing-gateway exited with {self.processes['gateway'].returncode}")
            self._start_gateway()
        return crashes

    def stop(self):
        for name in ("gateway", "core"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self.stop_enclaves()
        self.stop_swtpm()
        if self in RUNNING_STACKS:
            RUNNING_STACKS.remove(self)
        if self.postgres:
            drop_postgres_database(*self.postgres)
            self.postgres = None

    def enclave_pids(self):
        """Processes of enclaves under this stack's core: they outlive a stopped core by design."""
        root = str(self.core_dir / "enclaves") + "/"
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as environ:
                    variables = environ.read().split(b"\0")
            except OSError:
                continue
            for variable in variables:
                if variable.startswith(b"LICENSING_ENCLAVE_DIR=") and variable[22:].decode(errors="replace").startswith(root):
                    pids.append(int(entry))
                    break
        return pids

    def stop_swtpm(self):
        """The embedded swtpm outlives a core that was killed; a later core would stop it."""
        state = str(self.core_dir / "tpm")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    arguments = cmdline.read().decode(errors="replace")
            except OSError:
                continue
            if arguments.startswith("swtpm") and state in arguments:
                try:
                    os.kill(int(entry), signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def stop_enclaves(self):
        for pid in self.enclave_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while self.enclave_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.enclave_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def exit_codes(self):
        return {name: process.poll() for name, process in self.processes.items()}

    def client(self):
        return ApiClient(self.url, self.ca_bundle)

    def tls_context(self):
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        context.check_hostname = False  # the certificate names 127.0.0.1 as an IP SAN; SNI is not sent for IPs
        return context

    def open_tls(self, timeout=10):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.tls_context().wrap_socket(raw, server_hostname=None)

    def raw_request(self, data, method, path, timeout=10, check=True):
        """Send raw bytes over a new TLS connection and read one response.

        The response is checked against the spec for ``method`` and ``path`` unless check is False.
        """
        with self.open_tls(timeout) as connection:
            connection.sendall(data)
            status, headers, body = read_raw_response(connection, time.monotonic() + timeout)
            closed = connection_closed(connection)
        if check:
            check_response(method, path, status, headers, body)
        return RawResponse(status, headers, body, closed)

    def signing_key_pem(self):
        """The current ES256 private key, read from licensing-core's data directory."""
        keys = sorted((self.core_dir / "keys" / "signing").glob("*.pem"))
        assert len(keys) == 1, f"expected one signing key, found {[key.name for key in keys]}"
        return keys[0].stem, keys[0].read_bytes()

def new_username(prefix="user"):
    return f"{prefix}-{secrets.token_hex(5)}"

def new_password():
    return "pw-" + secrets.token_urlsafe(12)

def assert_problem(response, status, slug):
    """Assert the status and the problem type of a requests response or a RawResponse."""
    actual_status = response.status_code if hasattr(response, "status_code") else response.status
    body = response.json() if hasattr(response, "status_code") else json.loads(response.body)
    assert actual_status == status, f"expected {status} {slug}, got {actual_status}: {body}"
    assert body["type"] == f"urn:licensing:problem:{slug}", body
    return body
