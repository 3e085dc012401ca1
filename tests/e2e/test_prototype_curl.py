"""The original prototype's flow with curl, as its Postman collection drives it: POST
/signup, POST /login, then POST /enclave at the returned accessPoint with the returned
token. The prototype's clients have no client certificate, so this deployment runs its
enclaves with --enclave-client-certificates optional."""

import json
import subprocess

import pytest

from support import new_password, new_username


def curl(*arguments):
    result = subprocess.run(["curl", "--silent", "--show-error", "--max-time", "60", *arguments],
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def prototype_stack(start_stack):
    return start_stack("prototype", [], ["--enclave-client-certificates", "optional"])


def post_json(stack, url, body, *extra):
    # --noproxy keeps any proxy setting of the environment away from loopback.
    output = curl("--noproxy", "*", "--cacert", str(stack.ca_bundle), "-H", "Content-Type: application/json",
                  "-w", "\n%{http_code}", "-d", json.dumps(body), *extra, url)
    text, status = output.rsplit("\n", 1)
    return int(status), json.loads(text)


def test_prototype_flow_with_curl(prototype_stack):
    username, password = new_username("curl"), new_password()
    status, signed_up = post_json(prototype_stack, prototype_stack.url + "/signup",
                                  {"username": username, "password": password})
    assert status == 201, signed_up
    assert signed_up["success"] is True

    status, login = post_json(prototype_stack, prototype_stack.url + "/login", {"username": username, "password": password})
    assert status == 200, login
    assert login["success"] is True
    assert login["accessPoint"].startswith("https://127.0.0.1:")

    status, called = post_json(prototype_stack, login["accessPoint"] + "/enclave", {"username": username},
                               "-H", f"Authorization: Bearer {login['token']}")
    assert status == 200, called
    assert called["success"] is True
    assert called["enclave_id"] == login["enclaveName"]

    status, rejected = post_json(prototype_stack, login["accessPoint"] + "/enclave", {"username": username},
                                "-H", "Authorization: Bearer not-a-token")
    assert status == 401, rejected
