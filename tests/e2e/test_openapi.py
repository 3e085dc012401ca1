"""api/openapi.yaml: the document itself, and one request to each documented operation.

Every response in the whole suite is also checked against the document as it arrives
(support.ApiClient and Stack.raw_request).
"""

import base64
import os

import jsonschema
import pytest

from enclave_support import create_ready_enclave, make_key_and_csr, new_user_session
from support import SPEC, new_password, new_username


def walk_refs(node, found):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.append(node["$ref"])
        for value in node.values():
            walk_refs(value, found)
    elif isinstance(node, list):
        for value in node:
            walk_refs(value, found)
    return found


def test_spec_is_openapi_31():
    assert SPEC.document["openapi"] == "3.1.0"
    assert SPEC.document["info"]["title"]
    operation_ids = [operation["operationId"] for _, _, operation in SPEC.operations()]
    assert len(operation_ids) == len(set(operation_ids))


def test_spec_refs_resolve():
    refs = walk_refs(SPEC.document, [])
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/"), ref
        SPEC.resolver.resolve(ref)


def test_spec_schemas_valid():
    for name, schema in SPEC.document["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    for template, method, operation in SPEC.operations():
        for status, response in operation["responses"].items():
            for media_type, content in (SPEC.resolve(response).get("content") or {}).items():
                jsonschema.Draft202012Validator.check_schema(content["schema"])


def test_spec_errors_are_problems():
    # /readyz returns 503 with its usual readiness document, so probes can read the checks.
    exceptions = {("get", "/readyz", "503")}
    for template, method, operation in SPEC.operations():
        for status, response in operation["responses"].items():
            assert status.isdigit(), f"{method} {template}: status {status}"
            content = SPEC.resolve(response).get("content") or {}
            if int(status) >= 400 and (method, template, status) not in exceptions:
                assert list(content) == ["application/problem+json"], f"{method} {template} {status}"


def test_spec_checker_catches_mismatch():
    # The checker must fail on responses that break the document, or every other check is void.
    bad = [
        ("GET", "/healthz", 200, {"content-type": "application/json"}, b'{"status":"fine"}'),
        ("GET", "/healthz", 500, {"content-type": "application/problem+json"}, b"{}"),
        ("POST", "/v1/users", 201, {"content-type": "application/json"},
         b'{"id":"x","username":"abc","created_at":"2024-01-01T00:00:00Z"}'),
        ("GET", "/v1/users/me", 401, {"content-type": "application/problem+json"},
         b'{"type":"urn:licensing:problem:invalid-token","title":"t","status":401,"detail":"d"}'),
        ("GET", "/nowhere", 200, {"content-type": "application/json"}, b"{}"),
        ("PUT", "/healthz", 405, {"content-type": "application/problem+json", "allow": "GET, POST"},
         b'{"type":"urn:licensing:problem:method-not-allowed","title":"t","status":405,"detail":"d"}'),
        ("POST", "/v1/sessions", 401, {"content-type": "application/problem+json"},
         b'{"type":"urn:licensing:problem:invalid-token","title":"t","status":401,"detail":"d"}'),
        ("POST", "/v1/sessions", 400, {"content-type": "application/problem+json"},
         b'{"type":"urn:licensing:problem:invalid-json","title":"t","status":400,"detail":"d","type":"x"}'),
    ]
    for method, path, status, headers, body in bad:
        with pytest.raises(AssertionError):
            SPEC.check(method, path, status, headers, body)


def call_operations(client, stack):
    """Make one successful call to each documented operation; returns {operationId: response}."""
    username, password = new_username("walk"), new_password()
    responses = {"createUser": client.post("/v1/users", json={"username": username, "password": password})}
    responses["login"] = client.post("/v1/sessions", json={"username": username, "password": password})
    tokens = responses["login"].json()
    responses["refreshSession"] = client.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]})
    access_token = responses["refreshSession"].json()["access_token"]
    authorization = {"Authorization": f"Bearer {access_token}"}
    responses["getCurrentUser"] = client.get("/v1/users/me", headers=authorization)
    responses["logout"] = client.delete("/v1/sessions/current", headers=authorization)
    responses["getJwks"] = client.get("/.well-known/jwks.json")
    responses["getHealth"] = client.get("/healthz")
    responses["getReadiness"] = client.get("/readyz")
    responses["getMetrics"] = client.get("/metrics")
    responses["prototypeSignup"] = client.post("/signup", json={"username": new_username("walk"),
                                                                "password": new_password()})

    # Enclave operations, for a second user whose session stays open.
    owner, owner_password, _, headers = new_user_session(client)
    responses["createEnclave"], enclave = create_ready_enclave(client, headers)
    enclave_id = enclave["id"]
    responses["getEnclave"] = client.get(f"/v1/enclaves/{enclave_id}", headers=headers)
    responses["listEnclaves"] = client.get("/v1/enclaves", headers=headers)
    responses["createEnclaveToken"] = client.post(f"/v1/enclaves/{enclave_id}/token", headers=headers)
    _, csr_pem = make_key_and_csr()
    responses["createClientCertificate"] = client.post(f"/v1/enclaves/{enclave_id}/client-certificate",
                                                       headers=headers, json={"csr_pem": csr_pem})
    # The enclave's renewal credential, read from its directory, renews its certificate.
    renewal = (stack.core_dir / "enclaves" / enclave_id / "renewal-credential").read_text().strip()
    _, enclave_csr = make_key_and_csr()
    responses["signEnclaveCsr"] = client.post("/v1/enclave-certificates",
                                              headers={"Authorization": f"Renewal {renewal}"},
                                              json={"enclave_id": enclave_id, "csr_pem": enclave_csr})
    nonce = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    responses["getEnclaveAttestation"] = client.get(f"/v1/enclaves/{enclave_id}/attestation",
                                                    params={"nonce": nonce}, headers=headers)
    responses["getAttestationKey"] = client.get("/v1/attestation/key")
    responses["prototypeLogin"] = client.post("/login", json={"username": owner, "password": owner_password})
    responses["deleteEnclave"] = client.delete(f"/v1/enclaves/{enclave_id}", headers=headers)
    return responses


def test_every_operation_answers(api, stack):
    responses = call_operations(api, stack)
    documented = {operation["operationId"]: (method, template, operation)
                  for template, method, operation in SPEC.operations()}
    assert set(responses) == set(documented), "an operation in the spec has no call here, or the reverse"
    for operation_id, response in responses.items():
        method, template, operation = documented[operation_id]
        success = sorted(status for status in operation["responses"] if status.startswith("2"))
        assert str(response.status_code) in success, f"{operation_id}: {response.status_code} {response.text[:200]}"


def test_undocumented_methods_rejected(api):
    for template in SPEC.document["paths"]:
        undocumented = {"GET", "POST", "PUT", "DELETE", "PATCH"} - SPEC.methods_of(template)
        for method in sorted(undocumented):
            response = api.request(method, template)
            assert response.status_code == 405, f"{method} {template}: {response.status_code}"
            allowed = {part.strip() for part in response.headers["Allow"].split(",")}
            assert allowed == SPEC.methods_of(template)
