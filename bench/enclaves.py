#!/usr/bin/python3
"""Enclave provisioning latency, memory per enclave, and requests per second.

Starts the embedded stack with `licensectl dev up`, then:
1. for each of N users (default 50), the time from POST /v1/enclaves until the enclave
   answers GET /healthz over mutual TLS (median and p99);
2. the resident memory (VmRSS) of each enclave process;
3. requests per second against one enclave (GET /v1/whoami with a valid token) from 64
   concurrent keep-alive mutual-TLS clients for a bounded time. The clients are Python
   threads on the same 2 cores, so this figure is a lower bound on what the enclave serves.

Usage: bench/enclaves.py [BUILD_DIR] [N]   (default build/release, 50)
"""

import json
import os
import pathlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BUILD = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build/release").resolve()
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 50
CLIENTS = 64
LOAD_SECONDS = 10


def session(verify, cert=None):
    result = requests.Session()
    result.trust_env = False
    result.verify = verify
    result.cert = cert
    return result


def client_files(gateway, headers, enclave_id, directory):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
           .sign(key, hashes.SHA256()))
    issued = gateway.post(f"{URL}/v1/enclaves/{enclave_id}/client-certificate", headers=headers,
                          json={"csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode()})
    issued.raise_for_status()
    key_file, cert_file = directory / f"{enclave_id}.key", directory / f"{enclave_id}.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_text(issued.json()["certificate_chain_pem"])
    return str(cert_file), str(key_file)


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


stack_dir = pathlib.Path(tempfile.mkdtemp(prefix="licensing-bench-enclaves."))
licensectl = str(BUILD / "bin" / "licensectl")
subprocess.run([licensectl, "dev", "up", "--dir", str(stack_dir), "--gateway-arg=--signup-limit=100000"], check=True, stdout=subprocess.DEVNULL)
try:
    stack = json.loads((stack_dir / "stack.json").read_text())
    URL, CA = stack["gateway_url"], stack["ca_bundle"]
    gateway = session(CA)
    password = secrets.token_hex(16)
    latencies, enclaves = [], []
    for index in range(COUNT):
        username = f"bench-{index}"
        gateway.post(f"{URL}/v1/users", json={"username": username, "password": password}).raise_for_status()
        login = gateway.post(f"{URL}/v1/sessions", json={"username": username, "password": password})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

        started = time.monotonic()
        created = gateway.post(f"{URL}/v1/enclaves", headers=headers)
        created.raise_for_status()
        enclave = created.json()
        cert = None
        deadline = started + 60
        while time.monotonic() < deadline:
            record = gateway.get(f"{URL}/v1/enclaves/{enclave['id']}", headers=headers).json()
            if record["state"] == "ready":
                if cert is None:
                    cert = client_files(gateway, headers, enclave["id"], stack_dir)
                try:
                    if session(CA, cert).get(record["endpoint"] + "/healthz", timeout=5).status_code == 200:
                        break
                except requests.RequestException:
                    pass
            elif record["state"] == "failed":
                raise SystemExit(f"enclave {enclave['id']} failed: {record}")
            time.sleep(0.02)
        else:
            raise SystemExit(f"enclave {enclave['id']} not ready within 60 s")
        latencies.append(time.monotonic() - started)
        token = gateway.post(f"{URL}/v1/enclaves/{enclave['id']}/token", headers=headers).json()["access_token"]
        enclaves.append((record, cert, token))

    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = pathlib.Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if f"LICENSING_ENCLAVE_DIR={stack_dir}".encode() in environ:
                pids.append(int(entry))
    memory = [rss_kib(pid) for pid in pids]

    record, cert, token = enclaves[0]
    counts = [0] * CLIENTS
    errors = [0] * CLIENTS
    stop_at = time.monotonic() + LOAD_SECONDS

    def load(slot):
        client = session(CA, cert)
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < stop_at:
            try:
                if client.get(record["endpoint"] + "/v1/whoami", headers=headers, timeout=10).status_code == 200:
                    counts[slot] += 1
                else:
                    errors[slot] += 1
            except requests.RequestException:
                errors[slot] += 1

    threads = [threading.Thread(target=load, args=(slot,)) for slot in range(CLIENTS)]
    load_started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - load_started

    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
    print(f"enclaves provisioned:       {len(latencies)}")
    print(f"request to TLS answer:      median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    print(f"resident memory (VmRSS):    median {statistics.median(memory) / 1024:.1f} MiB over {len(memory)} processes, "
          f"max {max(memory) / 1024:.1f} MiB")
    print(f"whoami at {CLIENTS} mTLS clients: {sum(counts) / elapsed:.0f} requests/s over {elapsed:.1f} s "
          f"({sum(counts)} ok, {sum(errors)} errors)")
finally:
    subprocess.run([licensectl, "dev", "down", "--dir", str(stack_dir)], stdout=subprocess.DEVNULL)
