"""Helpers for tests that provision enclaves and talk to them over mutual TLS."""

import time

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support import new_password, new_username

READY_TIMEOUT_SECONDS = 60


def make_key_and_csr(common_name="e2e-client"):
    """A P-256 key (PEM, PKCS#8) and a CSR for it (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def new_user_session(client):
    """Signs up and logs in a new user; returns (username, password, user id, bearer headers)."""
    username, password = new_username("encl"), new_password()
    created = client.post("/v1/users", json={"username": username, "password": password})
    assert created.status_code == 201, created.text
    login = client.post("/v1/sessions", json={"username": username, "password": password})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    return username, password, created.json()["id"], headers


def wait_until_ready(client, enclave_id, headers):
    """Polls GET /v1/enclaves/{id} until the enclave is ready; returns its record."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    record = None
    while time.monotonic() < deadline:
        response = client.get(f"/v1/enclaves/{enclave_id}", headers=headers)
        assert response.status_code == 200, response.text
        record = response.json()
        if record["state"] in ("ready", "failed"):
            break
        time.sleep(0.2)
    assert record is not None and record["state"] == "ready", f"enclave not ready: {record}"
    return record


def create_ready_enclave(client, headers):
    response = client.post("/v1/enclaves", headers=headers)
    assert response.status_code == 201, response.text
    return response, wait_until_ready(client, response.json()["id"], headers)


class EnclaveClient:
    """Talks to one enclave over mutual TLS with a client certificate from the gateway."""

    def __init__(self, stack, client, enclave, headers, directory):
        self.endpoint = enclave["endpoint"]
        key_pem, csr_pem = make_key_and_csr()
        issued = client.post(f"/v1/enclaves/{enclave['id']}/client-certificate", headers=headers,
                             json={"csr_pem": csr_pem})
        assert issued.status_code == 200, issued.text
        directory.mkdir(parents=True, exist_ok=True)
        self.key_file = directory / "client.key"
        self.certificate_file = directory / "client.pem"
        self.key_file.write_text(key_pem)
        self.key_file.chmod(0o600)
        self.certificate_file.write_text(issued.json()["certificate_chain_pem"])
        minted = client.post(f"/v1/enclaves/{enclave['id']}/token", headers=headers)
        assert minted.status_code == 200, minted.text
        self.token = minted.json()["access_token"]
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the CA below
        self.session.verify = str(stack.ca_bundle)
        self.session.cert = (str(self.certificate_file), str(self.key_file))

    def request(self, method, path, token=None, **kwargs):
        headers = kwargs.pop("headers", {})
        headers.setdefault("Authorization", f"Bearer {token or self.token}")
        return self.session.request(method, self.endpoint + path, headers=headers, timeout=30, **kwargs)
