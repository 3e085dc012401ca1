"""Attestation through the gateway: the document is checked here with an independent
verifier written on python3-cryptography from the TPM 2.0 structure definitions, then
licensectl's verifier, its trust store and the attested call are driven as a user would."""

import base64
import hashlib
import os
import pathlib
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from enclave_support import EnclaveClient, create_ready_enclave, new_user_session
from support import new_password, new_username

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_ECDSA = 0x0018
TPM_ALG_SHA256 = 0x000B


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Reader:
    """Big-endian reader for TPM marshalled structures."""

    def __init__(self, data):
        self.data, self.offset = data, 0

    def take(self, count):
        chunk = self.data[self.offset:self.offset + count]
        assert len(chunk) == count, "structure ends early"
        self.offset += count
        return chunk

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def sized(self):
        return self.take(self.u16())


def parse_quote(attest):
    """TPMS_ATTEST with TPMS_QUOTE_INFO (TPM 2.0 Part 2, 10.12)."""
    reader = Reader(attest)
    quote = {"magic": reader.u32(), "type": reader.u16(), "signer": reader.sized(), "extra_data": reader.sized()}
    quote["clock"], quote["reset_count"], quote["restart_count"], quote["safe"] = (
        reader.u64(), reader.u32(), reader.u32(), reader.u8())
    reader.u64()  # firmwareVersion
    selections = []
    for _ in range(reader.u32()):
        algorithm = reader.u16()
        bitmap = reader.take(reader.u8())
        indices = [byte * 8 + bit for byte, value in enumerate(bitmap) for bit in range(8) if value >> bit & 1]
        selections.append((algorithm, indices))
    quote["selections"] = selections
    quote["pcr_digest"] = reader.sized()
    assert reader.offset == len(attest), "bytes after TPMS_QUOTE_INFO"
    return quote


def verify_independently(document, nonce, enclave_id, presented_der):
    """Every check a client needs, made without the project's C++ code."""
    quote = document["quote"]
    attest = unb64url(quote["attest"])
    parsed = parse_quote(attest)
    assert parsed["magic"] == TPM_GENERATED_VALUE
    assert parsed["type"] == TPM_ST_ATTEST_QUOTE

    leaf = x509.load_pem_x509_certificate(document["certificate_chain_pem"][0].encode())
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)
    assert leaf_der == presented_der, "the attested certificate is not the one the enclave presents"
    expected_extra = hashlib.sha256(b"enclave-attestation-v1" + nonce + hashlib.sha256(leaf_der).digest()).digest()
    assert parsed["extra_data"] == expected_extra

    # The signature: TPMT_SIGNATURE with ECDSA over SHA-256, checked with the AK's public key.
    signature = Reader(unb64url(quote["signature"]))
    assert signature.u16() == TPM_ALG_ECDSA
    assert signature.u16() == TPM_ALG_SHA256
    r, s = int.from_bytes(signature.sized(), "big"), int.from_bytes(signature.sized(), "big")
    key = serialization.load_pem_public_key(document["attestation_key"]["public_key_pem"].encode())
    key.verify(encode_dss_signature(r, s), attest, ec.ECDSA(hashes.SHA256()))
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert document["attestation_key"]["fingerprint"] == "sha256:" + hashlib.sha256(spki).hexdigest()

    # The PCR values hash to the quoted digest, in selection order.
    assert [algorithm for algorithm, _ in parsed["selections"]] == [TPM_ALG_SHA256]
    indices = parsed["selections"][0][1]
    values = document["quote"]["pcrs"]["sha256"]
    assert sorted(int(index) for index in values) == indices
    concatenated = b"".join(bytes.fromhex(values[str(index)]) for index in indices)
    assert hashlib.sha256(concatenated).digest() == parsed["pcr_digest"]

    # The event log replays to PCR 23, and one event measures this certificate.
    pcr = bytes(32)
    certificate_sha256 = hashlib.sha256(leaf_der).hexdigest()
    measured = []
    for event in document["event_log"]:
        text = "enclave-event-v1|{seq}|{enclave_id}|{owner}|{certificate_sha256}|{image_sha256}".format(**event)
        digest = hashlib.sha256(text.encode()).hexdigest()
        assert event["digest"] == digest
        pcr = hashlib.sha256(pcr + bytes.fromhex(digest)).digest()
        if event["certificate_sha256"] == certificate_sha256:
            measured.append(event)
    assert pcr.hex() == values["23"]
    assert measured and measured[-1]["enclave_id"] == enclave_id
    return measured[-1]


def presented_certificate(enclave_client):
    """The DER certificate the enclave presents at the TLS handshake."""
    host, port = enclave_client.endpoint.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=enclave_client.session.verify)
    context.check_hostname = False
    context.load_cert_chain(enclave_client.session.cert[0], enclave_client.session.cert[1])
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


@pytest.fixture(scope="module")
def owned_enclave(stack, work_dir):
    with stack.client() as client:
        username, password, user_id, headers = new_user_session(client)
        _, enclave = create_ready_enclave(client, headers)
        enclave_client = EnclaveClient(stack, client, enclave, headers, work_dir / "attestation-client")
    return {"username": username, "password": password, "user_id": user_id, "headers": headers,
            "enclave": enclave, "client": enclave_client}


def attestation(api, enclave_id, headers, nonce):
    return api.get(f"/v1/enclaves/{enclave_id}/attestation", params={"nonce": b64url(nonce)}, headers=headers)


def test_document_verifies_independently(api, owned_enclave):
    enclave = owned_enclave["enclave"]
    nonce = os.urandom(32)
    response = attestation(api, enclave["id"], owned_enclave["headers"], nonce)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    document = response.json()
    assert document["enclave_id"] == enclave["id"]
    assert unb64url(document["nonce"]) == nonce
    event = verify_independently(document, nonce, enclave["id"], presented_certificate(owned_enclave["client"]))
    assert event["owner"] == owned_enclave["user_id"]
    assert "ek_certificate_pem" in document  # the embedded swtpm is provisioned with one


def test_quote_is_bound_to_its_nonce(api, owned_enclave):
    enclave = owned_enclave["enclave"]
    first, second = os.urandom(16), os.urandom(64)
    document = attestation(api, enclave["id"], owned_enclave["headers"], first).json()
    later = attestation(api, enclave["id"], owned_enclave["headers"], second)
    assert later.status_code == 200
    presented = presented_certificate(owned_enclave["client"])
    # The first document does not pass for the second nonce: a replayed quote is useless.
    with pytest.raises(AssertionError):
        verify_independently(document, second, enclave["id"], presented)
    verify_independently(later.json(), second, enclave["id"], presented)


@pytest.mark.parametrize("nonce", [None, "", b64url(os.urandom(15)), b64url(os.urandom(65)),
                                   b64url(os.urandom(32)) + "=", "not base64url!!!!!!!!!!!!!", "+" * 43])
def test_bad_nonce_rejected(api, owned_enclave, nonce):
    params = {} if nonce is None else {"nonce": nonce}
    response = api.get(f"/v1/enclaves/{owned_enclave['enclave']['id']}/attestation", params=params,
                       headers=owned_enclave["headers"])
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "urn:licensing:problem:invalid-request"


def test_other_users_enclave_not_found(api, owned_enclave):
    _, _, _, other_headers = new_user_session(api)
    response = attestation(api, owned_enclave["enclave"]["id"], other_headers, os.urandom(32))
    assert response.status_code == 404
    unauthenticated = api.get(f"/v1/enclaves/{owned_enclave['enclave']['id']}/attestation",
                              params={"nonce": b64url(os.urandom(32))})
    assert unauthenticated.status_code == 401


def test_attestation_key_matches_core_output(api, stack):
    response = api.get("/v1/attestation/key")
    assert response.status_code == 200
    key = response.json()
    printed = [line for line in stack.core_log.read_text().splitlines()
               if line.startswith("attestation key fingerprint: ")]
    assert printed, "licensing-core did not print its attestation key"
    assert printed[-1].split(": ", 1)[1] == key["fingerprint"]


def licensectl(stack, bin_dir, home, *arguments, password=None):
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    return subprocess.run([str(bin_dir / "licensectl"), "--gateway", stack.url, "--ca-bundle", str(stack.ca_bundle),
                           *arguments], input=password, capture_output=True, text=True, timeout=120, env=environment)


@pytest.fixture(scope="module")
def user_home(stack, bin_dir, work_dir, owned_enclave):
    home = work_dir / "attestation-home"
    home.mkdir()
    logged_in = licensectl(stack, bin_dir, home, "login", "--username", owned_enclave["username"], "--password-stdin",
                           password=owned_enclave["password"] + "\n")
    assert logged_in.returncode == 0, logged_in.stderr
    return home


def fingerprint_printed_by(stack):
    lines = [line for line in stack.core_log.read_text().splitlines() if line.startswith("attestation key fingerprint: ")]
    return lines[-1].split(": ", 1)[1]


def test_licensectl_attest_and_call(stack, bin_dir, user_home, owned_enclave):
    enclave_id = owned_enclave["enclave"]["id"]
    unpinned = licensectl(stack, bin_dir, user_home, "enclave", "attest", enclave_id)
    assert unpinned.returncode == 1
    assert "ak_untrusted" in unpinned.stdout

    assert licensectl(stack, bin_dir, user_home, "trust", "add", "ak", fingerprint_printed_by(stack)).returncode == 0
    assert licensectl(stack, bin_dir, user_home, "trust", "add", "ca", str(stack.ca_bundle)).returncode == 0
    attested = licensectl(stack, bin_dir, user_home, "enclave", "attest", enclave_id)
    assert attested.returncode == 0, attested.stdout + attested.stderr
    for check in ("ak_trusted", "quote_nonce", "event_log", "certificate_chain", "certificate_names",
                  "tls_certificate_pinned"):
        assert f"[ ok ] {check}" in attested.stdout
    assert "verdict: attested" in attested.stdout

    stored = licensectl(stack, bin_dir, user_home, "enclave", "call", enclave_id, "PUT", "/v1/secrets/attested",
                        "--data", "over an attested channel")
    assert stored.returncode == 0, stored.stderr
    read = licensectl(stack, bin_dir, user_home, "enclave", "call", enclave_id, "GET", "/v1/secrets/attested")
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "over an attested channel"


def test_call_refused_when_attestation_fails(stack, bin_dir, user_home, owned_enclave):
    enclave_id = owned_enclave["enclave"]["id"]
    other_home = user_home.parent / "attestation-home-wrong-ak"
    shutil.copytree(user_home, other_home)
    trust = other_home / ".config" / "licensectl" / "trust.json"
    trust.unlink(missing_ok=True)
    assert licensectl(stack, bin_dir, other_home, "trust", "add", "ak", "sha256:" + "ab" * 32).returncode == 0
    assert licensectl(stack, bin_dir, other_home, "trust", "add", "ca", str(stack.ca_bundle)).returncode == 0
    refused = licensectl(stack, bin_dir, other_home, "enclave", "call", enclave_id, "PUT", "/v1/secrets/unattested",
                         "--data", "must not arrive")
    assert refused.returncode == 1
    assert "ak_untrusted" in refused.stderr
    assert "nothing was sent" in refused.stderr
    response = owned_enclave["client"].request("GET", "/v1/secrets/unattested")
    assert response.status_code == 404


def test_trust_rejects_malformed_values(stack, bin_dir, user_home):
    for arguments in (("ak", "sha256:XYZ"), ("ak", "ab" * 32), ("image", "12"), ("ca", "/nonexistent/ca.pem")):
        result = licensectl(stack, bin_dir, user_home, "trust", "add", *arguments)
        assert result.returncode == 1, arguments
        assert result.stderr.startswith("error: "), arguments


def start_swtpm(state, port):
    return subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
                             "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                             "--flags", "not-need-init,startup-clear"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_port(port, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"swtpm did not listen on {port}")


def free_port_pair():
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two adjacent free ports")


def test_unreachable_tpm_is_503_and_recovers(start_stack, work_dir):
    state = work_dir / "external-swtpm"
    state.mkdir()
    port = free_port_pair()
    swtpm = start_swtpm(state, port)
    try:
        wait_for_port(port)
        tpm_stack = start_stack("external-tpm", core_args=["--tpm-tcti", f"swtpm:host=127.0.0.1,port={port}"])
        with tpm_stack.client() as client:
            _, _, _, headers = new_user_session(client)
            _, enclave = create_ready_enclave(client, headers)
            assert attestation(client, enclave["id"], headers, os.urandom(32)).status_code == 200

            swtpm.terminate()
            swtpm.wait(timeout=10)
            down = attestation(client, enclave["id"], headers, os.urandom(32))
            assert down.status_code == 503, down.text
            assert down.json()["type"] == "urn:licensing:problem:tpm-unreachable"
            assert "Retry-After" in down.headers
            metrics = client.get("/metrics").text
            assert 'licensing_attestation_failures_total{reason="tpm_unreachable"}' in metrics

            # An enclave created while the TPM is away cannot have its certificate measured:
            # its CSR gets 503 before the credential is spent, and it retries.
            _, _, _, waiting_headers = new_user_session(client)
            waiting = client.post("/v1/enclaves", headers=waiting_headers)
            assert waiting.status_code == 201, waiting.text
            time.sleep(2)
            assert client.get(f"/v1/enclaves/{waiting.json()['id']}", headers=waiting_headers).json()["state"] == "starting"

            # The TPM comes back (after a restart, so its PCRs are empty): the core opens it
            # again, extends the log anew, and quotes that verify.
            swtpm = start_swtpm(state, port)
            wait_for_port(port)
            deadline = time.monotonic() + 20
            while True:
                nonce = os.urandom(32)
                again = attestation(client, enclave["id"], headers, nonce)
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert again.status_code == 200, again.text
            document = again.json()
            leaf = x509.load_pem_x509_certificate(document["certificate_chain_pem"][0].encode())
            verify_independently(document, nonce, enclave["id"], leaf.public_bytes(serialization.Encoding.DER))

            # The waiting enclave's retry succeeds with its first credential.
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                state = client.get(f"/v1/enclaves/{waiting.json()['id']}", headers=waiting_headers).json()["state"]
                if state != "starting":
                    break
                time.sleep(0.3)
            assert state == "ready"
            assert attestation(client, waiting.json()["id"], waiting_headers, os.urandom(32)).status_code == 200
        tpm_stack.stop()
    finally:
        swtpm.terminate()
        swtpm.wait(timeout=10)


def tpm2_tool(port, *arguments, cwd):
    environment = dict(os.environ, TPM2TOOLS_TCTI=f"swtpm:host=127.0.0.1,port={port}")
    return subprocess.run(list(arguments), cwd=cwd, env=environment, capture_output=True, text=True, timeout=60)


def test_tpm_in_lockout_is_503(start_stack, work_dir):
    """A TPM in dictionary-attack lockout: measurements go on (PCRs are not protected by the
    lockout), and quotes, which need the AK's authorization, are refused with a 503 that
    says so."""
    state = work_dir / "lockout-swtpm"
    state.mkdir()
    port = free_port_pair()
    swtpm = start_swtpm(state, port)
    try:
        wait_for_port(port)
        # One authorization failure locks the TPM for an hour: tpm2-tools sets the
        # parameters and then fails once on a key of its own.
        assert tpm2_tool(port, "tpm2_dictionarylockout", "-s", "-n", "1", "-t", "3600", "-l", "3600",
                         cwd=state).returncode == 0
        assert tpm2_tool(port, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", "owner.ctx", "-p", "right",
                         cwd=state).returncode == 0
        failed = tpm2_tool(port, "tpm2_create", "-C", "owner.ctx", "-P", "wrong", "-G", "ecc", "-u", "key.pub",
                           "-r", "key.priv", cwd=state)
        assert failed.returncode != 0
        tpm2_tool(port, "tpm2_flushcontext", "-t", cwd=state)
        capabilities = tpm2_tool(port, "tpm2_getcap", "properties-variable", cwd=state).stdout
        assert "inLockout:                 1" in capabilities

        tpm_stack = start_stack("lockout-tpm", core_args=["--tpm-tcti", f"swtpm:host=127.0.0.1,port={port}"])
        with tpm_stack.client() as client:
            _, _, _, headers = new_user_session(client)
            _, enclave = create_ready_enclave(client, headers)
            refused = attestation(client, enclave["id"], headers, os.urandom(32))
            assert refused.status_code == 503, refused.text
            assert refused.json()["type"] == "urn:licensing:problem:tpm-lockout"
            assert int(refused.headers["Retry-After"]) > 0
        tpm_stack.stop()
    finally:
        swtpm.terminate()
        swtpm.wait(timeout=10)


def test_embedded_swtpm_restarted_after_it_dies(api, stack, owned_enclave):
    enclave = owned_enclave["enclave"]
    pid = int((stack.core_dir / "tpm" / "swtpm.pid").read_text())
    os.kill(pid, 9)
    deadline = time.monotonic() + 20
    statuses = []
    while time.monotonic() < deadline:
        nonce = os.urandom(32)
        response = attestation(api, enclave["id"], owned_enclave["headers"], nonce)
        statuses.append(response.status_code)
        if response.status_code == 200:
            break
        assert response.status_code == 503, response.text
        time.sleep(0.3)
    assert statuses[-1] == 200, statuses
    new_pid = int((stack.core_dir / "tpm" / "swtpm.pid").read_text())
    assert new_pid != pid
    # The restarted TPM's PCR 23 was empty; the core extended the log again.
    verify_independently(response.json(), nonce, enclave["id"], presented_certificate(owned_enclave["client"]))


def enclave_pid(stack, enclave_id):
    for pid in stack.enclave_pids():
        try:
            environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"LICENSING_ENCLAVE_ID={enclave_id}".encode() in environ.split(b"\0"):
            return pid
    return None


def test_restarted_ready_enclave_gets_no_bootstrap_credential(api, stack, owned_enclave):
    """A ready enclave that dies comes back with its stored certificate; no unused bootstrap
    credential is left in its directory, and it attests with the same certificate."""
    enclave = owned_enclave["enclave"]
    before = presented_certificate(owned_enclave["client"])
    pid = enclave_pid(stack, enclave["id"])
    assert pid is not None
    os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new_pid = enclave_pid(stack, enclave["id"])
        state = api.get(f"/v1/enclaves/{enclave['id']}", headers=owned_enclave["headers"]).json()["state"]
        if new_pid not in (None, pid) and state == "ready":
            break
        time.sleep(0.2)
    assert new_pid not in (None, pid)
    assert state == "ready"
    assert not (stack.core_dir / "enclaves" / enclave["id"] / "bootstrap").exists()
    assert presented_certificate(owned_enclave["client"]) == before
    nonce = os.urandom(32)
    document = attestation(api, enclave["id"], owned_enclave["headers"], nonce).json()
    verify_independently(document, nonce, enclave["id"], before)
