"""Enclaves end to end, with two users who each reach their own enclave over mutual TLS.

The other user's credentials are rejected by each enclave. Enclave certificates are
checked with the openssl command. The file also covers the original prototype's flow and
the recovery of a killed enclave process."""

import os
import signal
import ssl
import subprocess
import time

import pytest
import requests

from enclave_support import (EnclaveClient, create_ready_enclave, make_key_and_csr, new_user_session,
                             wait_until_ready)
from support import assert_problem, new_password, new_username


@pytest.fixture(scope="module")
def enclave_stack(start_stack):
    # The default quota of one enclave per user applies, so test_quota_reached can hit it.
    return start_stack("enclaves", [])


@pytest.fixture(scope="module")
def two_users(enclave_stack, work_dir):
    """Alice and Bob, each with a ready enclave and a mutual-TLS client for it."""
    users = {}
    with enclave_stack.client() as client:
        for name in ("alice", "bob"):
            username, password, user_id, headers = new_user_session(client)
            _, enclave = create_ready_enclave(client, headers)
            users[name] = {
                "username": username, "password": password, "id": user_id, "headers": headers, "enclave": enclave,
                "client": EnclaveClient(enclave_stack, client, enclave, headers, work_dir / "clients" / name),
            }
    return users


def test_secret_round_trip(two_users):
    for name, user in two_users.items():
        stored = user["client"].request("PUT", "/v1/secrets/license", data=f"{name}-key".encode())
        assert stored.status_code in (200, 201, 204), stored.text
        read = user["client"].request("GET", "/v1/secrets/license")
        assert read.status_code == 200, read.text
        assert read.content == f"{name}-key".encode()


def test_whoami_names_owner(two_users):
    for user in two_users.values():
        response = user["client"].request("GET", "/v1/whoami")
        assert response.status_code == 200, response.text
        assert response.json() == {"enclave_id": user["enclave"]["id"], "owner": user["id"]}


def test_foreign_token_refused(two_users):
    alice, bob = two_users["alice"], two_users["bob"]
    # Alice's client certificate, Bob's enclave token: the token's audience is Bob's enclave.
    # Alice's enclave must refuse it.
    response = alice["client"].request("GET", "/v1/whoami", token=bob["client"].token)
    assert response.status_code == 401, response.text


def test_gateway_token_refused_by_enclave(two_users):
    alice = two_users["alice"]
    gateway_token = alice["headers"]["Authorization"].split(" ", 1)[1]
    response = alice["client"].request("GET", "/v1/whoami", token=gateway_token)
    assert response.status_code == 401, response.text


def test_foreign_client_certificate_refused(two_users):
    alice, bob = two_users["alice"], two_users["bob"]
    session = requests.Session()
    session.trust_env = False
    session.verify = alice["client"].session.verify
    session.cert = bob["client"].session.cert
    with pytest.raises(requests.exceptions.RequestException):
        response = session.get(alice["client"].endpoint + "/v1/whoami",
                               headers={"Authorization": f"Bearer {alice['client'].token}"}, timeout=15)
        # A TLS 1.3 server may reject the certificate after the client's handshake ends,
        # so the request itself fails. Reaching this line with a response is a failure too.
        pytest.fail(f"a foreign client certificate got HTTP {response.status_code}")


def test_missing_client_certificate_refused(two_users):
    alice = two_users["alice"]
    session = requests.Session()
    session.trust_env = False
    session.verify = alice["client"].session.verify
    with pytest.raises(requests.exceptions.RequestException):
        response = session.get(alice["client"].endpoint + "/v1/whoami",
                               headers={"Authorization": f"Bearer {alice['client'].token}"}, timeout=15)
        pytest.fail(f"a request without a client certificate got HTTP {response.status_code}")


def test_client_certificate_from_other_ca_refused(two_users, work_dir):
    alice = two_users["alice"]
    directory = work_dir / "rogue-client"
    directory.mkdir(exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "1", "-subj", "/CN=rogue",
                    "-addext", f"subjectAltName=URI:urn:licensing:user:{alice['id']}",
                    "-addext", "extendedKeyUsage=clientAuth"], cwd=directory, check=True, capture_output=True)
    session = requests.Session()
    session.trust_env = False
    session.verify = alice["client"].session.verify
    session.cert = (str(directory / "rogue.pem"), str(directory / "rogue.key"))
    with pytest.raises(requests.exceptions.RequestException):
        response = session.get(alice["client"].endpoint + "/v1/whoami",
                               headers={"Authorization": f"Bearer {alice['client'].token}"}, timeout=15)
        pytest.fail(f"a certificate from another CA got HTTP {response.status_code}")


def test_other_users_enclave_not_found(enclave_stack, two_users):
    alice, bob = two_users["alice"], two_users["bob"]
    with enclave_stack.client() as client:
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/token")):
            response = client.request(method, f"/v1/enclaves/{bob['enclave']['id']}{suffix}", headers=alice["headers"])
            assert_problem(response, 404, "enclave-not-found")
        listed = client.get("/v1/enclaves", headers=alice["headers"]).json()["enclaves"]
        assert [enclave["id"] for enclave in listed] == [alice["enclave"]["id"]]


def test_malformed_enclave_id_not_found(enclave_stack, two_users):
    alice = two_users["alice"]
    with enclave_stack.client() as client:
        for bad in ("not-a-uuid", "..%2F..", "A" * 36, "00000000-0000-4000-8000-000000000000"):
            response = client.get(f"/v1/enclaves/{bad}", headers=alice["headers"])
            assert_problem(response, 404, "enclave-not-found")


def test_quota_reached(enclave_stack, two_users):
    alice = two_users["alice"]
    with enclave_stack.client() as client:
        response = client.post("/v1/enclaves", headers=alice["headers"])
        assert_problem(response, 409, "enclave-conflict")


def test_idempotency_key_returns_same_enclave(enclave_stack):
    with enclave_stack.client() as client:
        _, _, _, headers = new_user_session(client)
        keyed = dict(headers, **{"Idempotency-Key": "create-once"})
        first = client.post("/v1/enclaves", headers=keyed)
        second = client.post("/v1/enclaves", headers=keyed)
        assert first.status_code == 201, first.text
        assert second.status_code == 201, second.text
        assert first.json()["id"] == second.json()["id"]
        bad = client.post("/v1/enclaves", headers=dict(headers, **{"Idempotency-Key": "spaces are bad"}))
        assert_problem(bad, 400, "invalid-request")
        wait_until_ready(client, first.json()["id"], headers)
        client.delete(f"/v1/enclaves/{first.json()['id']}", headers=headers)


def test_enclave_certificate_verifies_with_openssl(enclave_stack, two_users, work_dir):
    for name, user in two_users.items():
        host, port = user["enclave"]["endpoint"].removeprefix("https://").rsplit(":", 1)
        pem = ssl.get_server_certificate((host, int(port)))
        leaf = work_dir / f"{name}-enclave.pem"
        leaf.write_text(pem)
        issuing = enclave_stack.core_dir / "ca" / "issuing.pem"
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(enclave_stack.ca_bundle), "-untrusted",
                                   str(issuing), "-purpose", "sslserver", str(leaf)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        text = subprocess.run(["openssl", "x509", "-in", str(leaf), "-noout", "-ext", "subjectAltName,basicConstraints"],
                              capture_output=True, text=True, check=True).stdout
        assert f"DNS:{user['enclave']['id']}.enclaves.licensing.internal" in text
        assert "IP Address:127.0.0.1" in text
        assert "CA:FALSE" in text


def test_s_client_sees_enclave_san(two_users, enclave_stack):
    alice = two_users["alice"]
    host, port = alice["enclave"]["endpoint"].removeprefix("https://").rsplit(":", 1)
    result = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", str(enclave_stack.ca_bundle),
                             "-cert", str(alice["client"].certificate_file), "-key", str(alice["client"].key_file),
                             "-verify_return_error", "-showcerts"],
                            input="", capture_output=True, text=True, timeout=30)
    assert "Verify return code: 0 (ok)" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    leaf = result.stdout.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    pem = "-----BEGIN CERTIFICATE-----" + leaf + "-----END CERTIFICATE-----\n"
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=pem, capture_output=True,
                          text=True, check=True).stdout
    assert f"{alice['enclave']['id']}.enclaves.licensing.internal" in text


def test_prototype_flow(enclave_stack):
    """POST /signup, POST /login, then POST /enclave with the returned token, as the original clients do."""
    username, password = new_username("proto"), new_password()
    with enclave_stack.client() as client:
        signed_up = client.post("/signup", json={"username": username, "password": password})
        assert signed_up.status_code == 201, signed_up.text
        assert signed_up.json()["success"] is True
        login = client.post("/login", json={"username": username, "password": password})
        assert login.status_code == 200, login.text
        body = login.json()
        assert body["success"] is True
        assert set(body) == {"success", "message", "enclaveName", "accessPoint", "token"}
        again = client.post("/login", json={"username": username, "password": password})
        assert again.json()["enclaveName"] == body["enclaveName"]
        wrong = client.post("/login", json={"username": username, "password": password + "x"})
        assert wrong.status_code == 401
        assert wrong.json()["success"] is False

    # The prototype's clients send only the token; enclaves here also require a client
    # certificate, so the call below presents one as well.
    session = requests.Session()
    session.trust_env = False
    session.verify = str(enclave_stack.ca_bundle)
    with enclave_stack.client() as client:
        user_login = client.post("/v1/sessions", json={"username": username, "password": password}).json()
        headers = {"Authorization": f"Bearer {user_login['access_token']}"}
        enclave = client.get(f"/v1/enclaves/{body['enclaveName']}", headers=headers).json()
        key_pem, csr_pem = make_key_and_csr()
        issued = client.post(f"/v1/enclaves/{enclave['id']}/client-certificate", headers=headers,
                             json={"csr_pem": csr_pem}).json()
    directory = enclave_stack.root / "proto-client"
    directory.mkdir(exist_ok=True)
    (directory / "key.pem").write_text(key_pem)
    (directory / "cert.pem").write_text(issued["certificate_chain_pem"])
    session.cert = (str(directory / "cert.pem"), str(directory / "key.pem"))
    called = session.post(body["accessPoint"] + "/enclave", json={"username": username},
                          headers={"Authorization": f"Bearer {body['token']}"}, timeout=30)
    assert called.status_code == 200, called.text
    assert called.json()["success"] is True
    assert called.json()["enclave_id"] == body["enclaveName"]


def enclave_pid(stack, enclave_id):
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:
            continue
        if f"LICENSING_ENCLAVE_ID={enclave_id}".encode() in variables:
            return int(entry)
    return None


def test_killed_enclave_restarted_with_data(enclave_stack, two_users):
    bob = two_users["bob"]
    stored = bob["client"].request("PUT", "/v1/secrets/survivor", data=b"still here")
    assert stored.status_code in (200, 201, 204), stored.text
    pid = enclave_pid(enclave_stack, bob["enclave"]["id"])
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    deadline = time.monotonic() + 60
    answer = None
    while time.monotonic() < deadline:
        try:
            answer = bob["client"].request("GET", "/v1/secrets/survivor")
            if answer.status_code == 200:
                break
        except requests.exceptions.RequestException:
            pass
        time.sleep(0.5)
    assert answer is not None and answer.status_code == 200, "the enclave did not come back"
    assert answer.content == b"still here"
    assert enclave_pid(enclave_stack, bob["enclave"]["id"]) not in (None, pid)


def test_delete_twice(enclave_stack):
    with enclave_stack.client() as client:
        _, _, _, headers = new_user_session(client)
        _, enclave = create_ready_enclave(client, headers)
        first = client.delete(f"/v1/enclaves/{enclave['id']}", headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["state"] == "deleted"
        second = client.delete(f"/v1/enclaves/{enclave['id']}", headers=headers)
        assert second.status_code == 200, second.text
        assert second.json()["state"] == "deleted"
        assert enclave_pid(enclave_stack, enclave["id"]) is None
        assert not (enclave_stack.core_dir / "enclaves" / enclave["id"]).exists()
        token = client.post(f"/v1/enclaves/{enclave['id']}/token", headers=headers)
        assert_problem(token, 409, "enclave-conflict")


def test_rotated_key_reaches_running_enclave(enclave_stack, two_users, bin_dir):
    alice = two_users["alice"]
    rotated = subprocess.run([str(bin_dir / "licensing-core"), "--data-dir", str(enclave_stack.core_dir), "--database",
                              enclave_stack.database.url, "rotate-signing-key"], capture_output=True, text=True,
                             timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    enclave_stack.processes["core"].send_signal(signal.SIGHUP)

    with enclave_stack.client() as client:
        deadline = time.monotonic() + 30
        keys = []
        while time.monotonic() < deadline:
            keys = client.get("/.well-known/jwks.json").json()["keys"]
            if len(keys) >= 2:
                break
            time.sleep(0.2)
        assert len(keys) >= 2, "the core did not publish the new key"
        minted = client.post(f"/v1/enclaves/{alice['enclave']['id']}/token", headers=alice["headers"])
        assert minted.status_code == 200, minted.text
        new_token = minted.json()["access_token"]

    # The enclave rereads its JWKS on SIGHUP; poll briefly for it to take effect.
    deadline = time.monotonic() + 10
    response = None
    while time.monotonic() < deadline:
        response = alice["client"].request("GET", "/v1/whoami", token=new_token)
        if response.status_code == 200:
            break
        time.sleep(0.2)
    assert response is not None and response.status_code == 200, response.text
    old = alice["client"].request("GET", "/v1/whoami")
    assert old.status_code == 200, "a token signed by the previous key must stay valid"


def test_credential_scheme_must_match(enclave_stack, two_users):
    alice = two_users["alice"]
    enclave_id = alice["enclave"]["id"]
    renewal = (enclave_stack.core_dir / "enclaves" / enclave_id / "renewal-credential").read_text().strip()
    _, csr_pem = make_key_and_csr()
    with enclave_stack.client() as client:
        wrong = client.post("/v1/enclave-certificates", headers={"Authorization": f"Bootstrap {renewal}"},
                            json={"enclave_id": enclave_id, "csr_pem": csr_pem})
        assert_problem(wrong, 401, "invalid-credential")
