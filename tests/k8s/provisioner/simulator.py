#!/usr/bin/python3
"""A Kubernetes API simulator for the provisioner tests, on 127.0.0.1 only.

It serves the subset of the API that licensing-core uses: pods, services, configmaps and
secrets (core/v1), ingresses (networking.k8s.io/v1) and certificaterequests
(cert-manager.io/v1) in any namespace. It supports create, get, list, watch, replace and
delete, and sets metadata.uid, resourceVersion and creationTimestamp. It returns 409 on
duplicate names and stale resourceVersions, 404 for missing objects, and applies label
and field selectors to lists and watch streams.

Behaviour that a cluster adds:
- a pod becomes Running and Ready after --pod-ready-delay seconds;
- a deleted pod gets a deletionTimestamp and disappears after --pod-delete-delay seconds,
  and then the garbage collector deletes every object whose ownerReferences name its uid;
- a CertificateRequest becomes Ready after --sign-delay seconds, with a certificate for
  the CSR's key and names, signed by a CA that the simulator makes at start.

Fault switches, set with POST /_sim/faults and a JSON object (each field optional):
  {"fail_next": N, "fail_status": 500}  the next N API requests return that status
  {"drop_watches": N}    the next N watches close right after their headers
  {"gone_watches": N}    the next N watches send one ERROR event with code 410
  {"never_sign": true}   CertificateRequests stay pending
  {"deny_requests": true}  CertificateRequests get the condition Denied=True
  {"conflict_puts": N}   the next N replaces return 409 Conflict
  {"garbage_collection": false}  owner references are not acted on
GET /_sim/objects returns every stored object. /_sim paths need no token and are not logged.

At start it writes into --directory: ca.pem (the serving CA), signing-ca.pem (the
CertificateRequest CA), token (the bearer token it accepts, reread on every request),
kubeconfig (pointing at itself), and last port (the port, once it listens). Every API request
is appended to --log as one JSON line: method, path, query, body, status.
"""

import argparse
import base64
import copy
import datetime
import ipaddress
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# (group, version, resource) -> kind, for every collection the simulator serves.
KINDS = {
    ("", "v1", "pods"): "Pod",
    ("", "v1", "services"): "Service",
    ("", "v1", "configmaps"): "ConfigMap",
    ("", "v1", "secrets"): "Secret",
    ("networking.k8s.io", "v1", "ingresses"): "Ingress",
    ("cert-manager.io", "v1", "certificaterequests"): "CertificateRequest",
}
# Only this many watch events are kept. A watch from before the oldest one gets 410.
EVENT_HISTORY = 1000
# A watch without timeoutSeconds ends after this many seconds.
DEFAULT_WATCH_SECONDS = 30


def now_text():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_ca(common_name):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def issue_server_certificate(ca_key, ca_certificate, public_key, subject, names, lifetime):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM)


def parse_duration(text):
    """Parses the Go durations cert-manager accepts, such as 86400s, 24h or 1h30m."""
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0.0, ""
    for character in text:
        if character.isdigit() or character == ".":
            number += character
        elif character in units and number:
            total += float(number) * units[character]
            number = ""
        else:
            raise ValueError(f"invalid duration {text!r}")
    if number:
        raise ValueError(f"invalid duration {text!r}: a unit is missing")
    return datetime.timedelta(seconds=total)


def matches_labels(labels, selector):
    """Supports the equality (a=b, a==b, a!=b) and existence (a, !a) selector terms."""
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def matches_fields(obj, selector):
    """Supports metadata.name and metadata.namespace equality terms."""
    if not selector:
        return True
    for term in selector.split(","):
        key, value = term.replace("==", "=").split("=", 1)
        field = key.split(".", 1)[1] if key.startswith("metadata.") else None
        if field not in ("name", "namespace") or obj["metadata"].get(field) != value:
            return False
    return True


class Cluster:
    """The stored objects, their event history and the simulated controllers."""

    def __init__(self, options, signing_key, signing_certificate):
        self.options = options
        self.signing_key = signing_key
        self.signing_certificate = signing_certificate
        self.lock = threading.Condition()
        self.objects = {}  # (group, version, resource, namespace, name) -> object
        self.events = []  # (resourceVersion, key, type, object)
        self.version = 100
        self.faults = {"fail_next": 0, "fail_status": 500, "drop_watches": 0, "gone_watches": 0,
                       "never_sign": False, "deny_requests": False, "conflict_puts": 0,
                       "garbage_collection": True}

    # --- storage (callers hold self.lock) ---

    def _record(self, key, event_type, obj):
        self.version += 1
        if event_type != "DELETED":
            obj["metadata"]["resourceVersion"] = str(self.version)
        self.events.append((self.version, key, event_type, copy.deepcopy(obj)))
        del self.events[:-EVENT_HISTORY]
        self.lock.notify_all()

    def create(self, collection, namespace, obj):
        name = obj.get("metadata", {}).get("name", "")
        key = collection + (namespace, name)
        if not name:
            return 422, status_body(422, "Invalid", "metadata.name is required")
        if key in self.objects:
            return 409, status_body(409, "AlreadyExists", f'{collection[2]} "{name}" already exists')
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        metadata.update({"namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": now_text()})
        if collection[2] == "pods":
            obj["status"] = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
            self._later(self.options.pod_ready_delay, self._make_ready, key, metadata["uid"])
        if collection[2] == "certificaterequests":
            obj["status"] = {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending",
                                             "message": "waiting for the issuer"}]}
            self._later(self.options.sign_delay, self._sign, key, metadata["uid"])
        self.objects[key] = obj
        self._record(key, "ADDED", obj)
        return 201, obj

    def replace(self, key, obj):
        current = self.objects.get(key)
        if current is None:
            return 404, status_body(404, "NotFound", f'"{key[4]}" not found')
        sent_version = obj.get("metadata", {}).get("resourceVersion")
        if self.faults["conflict_puts"] > 0:
            self.faults["conflict_puts"] -= 1
            return 409, status_body(409, "Conflict", "injected conflict")
        if sent_version and sent_version != current["metadata"]["resourceVersion"]:
            return 409, status_body(409, "Conflict", "the object has been modified; apply your changes to the latest version")
        obj = copy.deepcopy(obj)
        for field in ("uid", "creationTimestamp", "namespace", "name"):
            obj["metadata"][field] = current["metadata"][field]
        if "status" in current:
            obj["status"] = current["status"]
        self.objects[key] = obj
        self._record(key, "MODIFIED", obj)
        return 200, obj

    def delete(self, key):
        obj = self.objects.get(key)
        if obj is None:
            return 404, status_body(404, "NotFound", f'"{key[4]}" not found')
        if key[2] == "pods":
            if "deletionTimestamp" not in obj["metadata"]:
                obj["metadata"]["deletionTimestamp"] = now_text()
                self._record(key, "MODIFIED", obj)
                self._later(self.options.pod_delete_delay, self._remove_pod, key, obj["metadata"]["uid"])
            return 200, obj
        self._remove(key)
        return 200, obj

    def _remove(self, key):
        obj = self.objects.pop(key)
        self._record(key, "DELETED", obj)
        return obj

    # --- controllers ---

    def _later(self, delay, function, *arguments):
        timer = threading.Timer(delay, self._locked, (function,) + arguments)
        timer.daemon = True
        timer.start()

    def _locked(self, function, *arguments):
        with self.lock:
            function(*arguments)

    def _current(self, key, uid):
        obj = self.objects.get(key)
        return obj if obj is not None and obj["metadata"]["uid"] == uid else None

    def _make_ready(self, key, uid):
        obj = self._current(key, uid)
        if obj is None or "deletionTimestamp" in obj["metadata"]:
            return
        obj["status"] = {"phase": "Running", "podIP": "10.0.0.1",
                         "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now_text()}]}
        self._record(key, "MODIFIED", obj)

    def _remove_pod(self, key, uid):
        if self._current(key, uid) is None:
            return
        self._remove(key)
        if not self.faults["garbage_collection"]:
            return
        for other_key, other in list(self.objects.items()):
            owners = other["metadata"].get("ownerReferences", [])
            if other_key[3] == key[3] and any(owner.get("uid") == uid for owner in owners):
                self._remove(other_key)

    def _sign(self, key, uid):
        obj = self._current(key, uid)
        if obj is None:
            return
        if self.faults["never_sign"]:
            return
        conditions, status = [], obj["status"]
        if self.faults["deny_requests"]:
            status["conditions"] = [{"type": "Denied", "status": "True", "reason": "PolicyDenied",
                                     "message": "denied by the approval policy"},
                                    {"type": "Ready", "status": "False", "reason": "Denied",
                                     "message": "denied by the approval policy"}]
            self._record(key, "MODIFIED", obj)
            return
        try:
            csr = x509.load_pem_x509_csr(base64.b64decode(obj["spec"]["request"], validate=True))
            if not csr.is_signature_valid:
                raise ValueError("the CSR signature does not verify")
            names = []
            try:
                names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                pass
            lifetime = parse_duration(obj["spec"].get("duration", "2160h"))
            certificate = issue_server_certificate(self.signing_key, self.signing_certificate, csr.public_key(),
                                                   csr.subject, names, lifetime)
            status["certificate"] = base64.b64encode(pem(certificate)).decode()
            status["ca"] = base64.b64encode(pem(self.signing_certificate)).decode()
            conditions = [{"type": "Ready", "status": "True", "reason": "Issued",
                           "message": "Certificate fetched from issuer successfully"}]
        except (ValueError, KeyError) as error:
            conditions = [{"type": "InvalidRequest", "status": "True", "reason": "RequestParsingError",
                           "message": str(error)},
                          {"type": "Ready", "status": "False", "reason": "Failed", "message": str(error)}]
        status["conditions"] = conditions
        self._record(key, "MODIFIED", obj)


def status_body(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}


def parse_path(path):
    """Returns ((group, version, resource), namespace, name or None), or None."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 5 and parts[0] == "api" and parts[2] == "namespaces":
        group, version, rest = "", parts[1], parts[3:]
    elif len(parts) >= 6 and parts[0] == "apis" and parts[3] == "namespaces":
        group, version, rest = parts[1], parts[2], parts[4:]
    else:
        return None
    if len(rest) not in (2, 3) or (group, version, rest[1]) not in KINDS:
        return None
    return (group, version, rest[1]), rest[0], rest[2] if len(rest) == 3 else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster = None
    directory = None
    log_lock = threading.Lock()

    def log_message(self, *arguments):
        pass

    def _send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _log(self, path, query, body, status):
        entry = {"method": self.command, "path": path, "query": query, "body": body, "status": status}
        with self.log_lock, open(self.server.request_log, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length == 0:
            return None
        try:
            return json.loads(self.rfile.read(length))
        except json.JSONDecodeError:
            return "not json"

    def _authorized(self):
        with open(os.path.join(self.directory, "token"), encoding="utf-8") as token_file:
            expected = token_file.read().strip()
        return self.headers.get("Authorization", "") == "Bearer " + expected

    def _handle(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        body = self._read_body()
        if url.path.startswith("/_sim/"):
            return self._control(url.path, body)

        status, answer = self._api(url.path, query, body)
        if status is not None:
            self._log(url.path, query, body, status)
            self._send_json(status, answer)

    def _api(self, path, query, body):
        cluster = self.cluster
        if not self._authorized():
            return 401, status_body(401, "Unauthorized", "Unauthorized")
        with cluster.lock:
            if cluster.faults["fail_next"] > 0:
                cluster.faults["fail_next"] -= 1
                code = cluster.faults["fail_status"]
                return code, status_body(code, "InternalError", "injected fault")
        parsed = parse_path(path)
        if parsed is None:
            return 404, status_body(404, "NotFound", "the server could not find the requested resource")
        collection, namespace, name = parsed
        key = collection + (namespace, name)

        if self.command == "GET" and name is None and query.get("watch") in ("true", "1"):
            # Logged when it opens: a watch ends when the client closes it, maybe never here.
            self._log(path, query, body, 200)
            self._watch(collection, namespace, query)
            return None, None
        with cluster.lock:
            if self.command == "GET" and name is None:
                items = [copy.deepcopy(obj) for item_key, obj in sorted(cluster.objects.items())
                         if item_key[:4] == collection + (namespace,)
                         and matches_labels(obj["metadata"].get("labels", {}), query.get("labelSelector", ""))
                         and matches_fields(obj, query.get("fieldSelector", ""))]
                return 200, {"kind": KINDS[collection] + "List", "apiVersion": "/".join(filter(None, collection[:2])),
                             "metadata": {"resourceVersion": str(cluster.version)}, "items": items}
            if self.command == "GET":
                obj = cluster.objects.get(key)
                return (200, copy.deepcopy(obj)) if obj else (404, status_body(404, "NotFound", f'"{name}" not found'))
            if self.command == "POST" and name is None and isinstance(body, dict):
                return cluster.create(collection, namespace, body)
            if self.command == "PUT" and name is not None and isinstance(body, dict):
                return cluster.replace(key, body)
            if self.command == "DELETE" and name is not None:
                status, obj = cluster.delete(key)
                return status, copy.deepcopy(obj)
        return 405, status_body(405, "MethodNotAllowed", f"{self.command} is not supported here")

    def _watch(self, collection, namespace, query):
        cluster = self.cluster
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send_chunk(data):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        with cluster.lock:
            drop = cluster.faults["drop_watches"] > 0
            gone = not drop and cluster.faults["gone_watches"] > 0
            cluster.faults["drop_watches"] -= 1 if drop else 0
            cluster.faults["gone_watches"] -= 1 if gone else 0
            since = int(query.get("resourceVersion") or cluster.version)
            oldest = cluster.events[0][0] if cluster.events else cluster.version + 1
            if since < oldest - 1 and since < cluster.version:
                gone = True
        if drop:
            # Closes the connection without the final chunk, as a dropped stream does.
            self.close_connection = True
            return
        if gone:
            event = {"type": "ERROR", "object": status_body(410, "Expired", f"too old resource version: {since}")}
            send_chunk(json.dumps(event).encode() + b"\n")
            send_chunk(b"")
            return

        deadline = time.monotonic() + float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        try:
            while time.monotonic() < deadline:
                with cluster.lock:
                    pending = [(version, event_type, obj) for version, key, event_type, obj in cluster.events
                               if version > since and key[:4] == collection + (namespace,)
                               and matches_labels(obj["metadata"].get("labels", {}), query.get("labelSelector", ""))
                               and matches_fields(obj, query.get("fieldSelector", ""))]
                    if not pending:
                        newest = cluster.version
                        cluster.lock.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                        since = max(since, newest)
                        continue
                for version, event_type, obj in pending:
                    send_chunk(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")
                    since = version
            send_chunk(b"")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def _control(self, path, body):
        cluster = self.cluster
        if path == "/_sim/faults" and self.command == "POST" and isinstance(body, dict):
            with cluster.lock:
                unknown = set(body) - set(cluster.faults)
                if unknown:
                    return self._send_json(400, {"error": f"unknown fault switches: {sorted(unknown)}"})
                cluster.faults.update(body)
                return self._send_json(200, cluster.faults)
        if path == "/_sim/objects" and self.command == "GET":
            with cluster.lock:
                items = [copy.deepcopy(obj) | {"_resource": key[2]} for key, obj in sorted(cluster.objects.items())]
            return self._send_json(200, {"items": items})
        return self._send_json(404, {"error": "no such control endpoint"})

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle


def write_file(path, data, mode=0o600):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as output:
        output.write(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--directory", required=True, help="where the CA, token, kubeconfig and port are written")
    parser.add_argument("--log", required=True, help="JSON-lines file that every API request is appended to")
    parser.add_argument("--pod-ready-delay", type=float, default=0.3, help="seconds until a new pod is Ready")
    parser.add_argument("--pod-delete-delay", type=float, default=0.2, help="seconds until a deleted pod is gone")
    parser.add_argument("--sign-delay", type=float, default=0.3, help="seconds until a CertificateRequest is signed")
    parser.add_argument("--max-seconds", type=float, default=300, help="seconds after which the simulator exits")
    options = parser.parse_args()

    os.makedirs(options.directory, mode=0o700, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(options.log)), exist_ok=True)
    serving_key, serving_ca = make_ca("simulator serving CA")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue_server_certificate(serving_key, serving_ca, leaf_key.public_key(),
                                    x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
                                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], datetime.timedelta(days=1))
    signing_key, signing_ca = make_ca("simulator cert-manager CA")
    write_file(os.path.join(options.directory, "ca.pem"), pem(serving_ca), 0o644)
    write_file(os.path.join(options.directory, "signing-ca.pem"), pem(signing_ca), 0o644)
    write_file(os.path.join(options.directory, "server.pem"), pem(leaf) + pem(serving_ca))
    write_file(os.path.join(options.directory, "server.key"), leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write_file(os.path.join(options.directory, "token"), base64.urlsafe_b64encode(os.urandom(24)))

    Handler.cluster = Cluster(options, signing_key, signing_ca)
    Handler.directory = options.directory
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_log = options.log
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(options.directory, "server.pem"), os.path.join(options.directory, "server.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]

    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "simulator",
        "clusters": [{"name": "simulator", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                       "certificate-authority": "ca.pem"}}],
        "users": [{"name": "core", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "simulator", "context": {"cluster": "simulator", "user": "core",
                                                       "namespace": "licensing-enclaves"}}],
    }
    write_file(os.path.join(options.directory, "kubeconfig"), json.dumps(kubeconfig, indent=2).encode())
    # Written last: a test waits for this file before it connects.
    write_file(os.path.join(options.directory, "port.tmp"), str(port).encode(), 0o644)
    os.replace(os.path.join(options.directory, "port.tmp"), os.path.join(options.directory, "port"))
    print(f"simulator listening on https://127.0.0.1:{port}", flush=True)
    # A simulator whose test never stops it still ends.
    stopper = threading.Timer(options.max_seconds, server.shutdown)
    stopper.daemon = True
    stopper.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
