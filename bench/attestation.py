#!/usr/bin/python3
"""Attestation latency and throughput, next to the raw quote time of the same TPM.

Starts the embedded stack with `licensectl dev up` (its own swtpm), creates one user and one
enclave, then:
1. times N sequential GET /v1/enclaves/{id}/attestation requests, each with a fresh nonce
   (median and p99, and attestations per second at 1 client);
2. counts attestations per second from 32 concurrent keep-alive HTTPS clients for a bounded
   time (Python threads on the same 2 cores);
3. stops the stack and runs bench_quote on the core's TPM state: TPM2_Quote with the same
   attestation key on the same swtpm state, in a loop, with nothing around it.
The ratio of 1 to 3 is what the gateway, gRPC, the PCR check and the JSON cost on top of
the TPM.

Usage: bench/attestation.py [BUILD_DIR] [N]   (default build/release, 200)
"""

import base64
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

BUILD = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build/release").resolve()
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 200
CLIENTS = 32
LOAD_SECONDS = 10


def session(verify):
    result = requests.Session()
    result.trust_env = False
    result.verify = verify
    return result


def nonce():
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


stack_dir = pathlib.Path(tempfile.mkdtemp(prefix="licensing-bench-attestation."))
licensectl = str(BUILD / "bin" / "licensectl")
subprocess.run([licensectl, "dev", "up", "--dir", str(stack_dir)], check=True, stdout=subprocess.DEVNULL)
stopped = False
try:
    stack = json.loads((stack_dir / "stack.json").read_text())
    url, ca = stack["gateway_url"], stack["ca_bundle"]
    gateway = session(ca)
    password = secrets.token_hex(16)
    gateway.post(f"{url}/v1/users", json={"username": "bench-attest", "password": password}).raise_for_status()
    login = gateway.post(f"{url}/v1/sessions", json={"username": "bench-attest", "password": password})
    login.raise_for_status()
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    enclave = gateway.post(f"{url}/v1/enclaves", headers=headers).json()
    deadline = time.monotonic() + 60
    while gateway.get(f"{url}/v1/enclaves/{enclave['id']}", headers=headers).json()["state"] != "ready":
        if time.monotonic() > deadline:
            raise SystemExit("the enclave did not become ready within 60 s")
        time.sleep(0.05)
    target = f"{url}/v1/enclaves/{enclave['id']}/attestation"

    latencies = []
    for _ in range(COUNT):
        started = time.monotonic()
        response = gateway.get(target, params={"nonce": nonce()}, headers=headers, timeout=30)
        latencies.append(time.monotonic() - started)
        if response.status_code != 200:
            raise SystemExit(f"attestation failed: {response.status_code} {response.text[:200]}")

    counts, errors = [0] * CLIENTS, [0] * CLIENTS
    stop_at = time.monotonic() + LOAD_SECONDS

    def load(slot):
        client = session(ca)
        while time.monotonic() < stop_at:
            try:
                ok = client.get(target, params={"nonce": nonce()}, headers=headers, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                counts[slot] += 1
            else:
                errors[slot] += 1

    threads = [threading.Thread(target=load, args=(slot,)) for slot in range(CLIENTS)]
    load_started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - load_started

    subprocess.run([licensectl, "dev", "down", "--dir", str(stack_dir)], check=True, stdout=subprocess.DEVNULL)
    stopped = True
    raw = subprocess.run([str(BUILD / "bin" / "bench_quote"), "--state", str(stack_dir / "core" / "tpm"),
                          "--count", str(COUNT)], check=True, capture_output=True, text=True)
    quote = json.loads(raw.stdout)

    median = statistics.median(latencies) * 1000
    print(f"attestations (1 client):     median {median:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
          f"{COUNT / sum(latencies):.1f} per s over {COUNT}")
    print(f"attestations ({CLIENTS} clients):    {sum(counts) / elapsed:.1f} per s over {elapsed:.1f} s "
          f"({sum(counts)} ok, {sum(errors)} errors)")
    print(f"raw TPM2_Quote, same TPM:    median {quote['median_ms']:.1f} ms, p99 {quote['p99_ms']:.1f} ms, "
          f"{quote['quotes_per_s']:.1f} per s over {quote['quotes']}")
    print(f"ratio attestation / quote:   {median / quote['median_ms']:.2f} (medians)")
finally:
    if not stopped:
        subprocess.run([licensectl, "dev", "down", "--dir", str(stack_dir)], stdout=subprocess.DEVNULL)
