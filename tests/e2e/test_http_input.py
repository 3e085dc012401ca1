"""Malformed and hostile HTTP input: bodies, media types, header limits, framing, slowloris."""

import concurrent.futures
import json
import time

import pytest

from support import assert_problem, new_password, new_username

JSON = {"Content-Type": "application/json"}
BODY_ENDPOINTS = ["/v1/users", "/signup", "/v1/sessions", "/v1/sessions/refresh"]


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
@pytest.mark.parametrize("body", [b'{"username": "abc",', b"", b"null x", b"{'username': 'abc'}",
                                  b'{"username": "abc" "password": "x"}', b'{"username": "a\\q"}'],
                         ids=["truncated", "empty", "trailing_garbage", "single_quotes", "missing_comma",
                              "bad_escape"])
def test_malformed_json_rejected(api, path, body):
    assert_problem(api.post(path, data=body, headers=JSON), 400, "invalid-json")


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
def test_json_not_object_rejected(api, path):
    for body in (b"[]", b'"text"', b"42", b"null"):
        assert_problem(api.post(path, data=body, headers=JSON), 400, "invalid-json")


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ab\x80"],
                         ids=["invalid_bytes", "overlong", "surrogate", "above_10ffff", "lone_continuation"])
def test_non_utf8_string_rejected(api, bad):
    body = b'{"username":"' + bad + b'","password":"' + new_password().encode() + b'"}'
    assert_problem(api.post("/v1/users", data=body, headers=JSON), 400, "invalid-json")
    assert_problem(api.post("/v1/sessions", data=body, headers=JSON), 400, "invalid-json")


def test_duplicate_json_member_rejected(api):
    username = new_username()
    body = f'{{"username":"{username}","password":"{new_password()}","username":"admin-{username}"}}'
    assert_problem(api.post("/v1/users", data=body.encode(), headers=JSON), 400, "invalid-json")


@pytest.mark.parametrize("body", [{"username": "abcdef"}, {"password": "abcdefgh1"},
                                  {"username": "abcdef", "password": "abcdefgh1", "admin": True},
                                  {"username": 123, "password": "abcdefgh1"},
                                  {"username": "abcdef", "password": None},
                                  {"username": ["abcdef"], "password": "abcdefgh1"}],
                         ids=["missing_password", "missing_username", "unknown_member", "number", "null", "array"])
def test_invalid_request_members_rejected(api, body):
    assert_problem(api.post("/v1/users", json=body), 400, "invalid-request")
    assert_problem(api.post("/v1/sessions", json=body), 400, "invalid-request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None,
                                          "application/json; charset=latin1", "application/jsonx",
                                          "multipart/form-data; boundary=x"])
def test_wrong_media_type_rejected(stack, content_type):
    body = json.dumps({"username": new_username(), "password": new_password()}).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    with stack.client() as client:
        for path in ("/v1/users", "/v1/sessions", "/v1/sessions/refresh"):
            assert_problem(client.post(path, data=body, headers=headers), 415, "unsupported-media-type")


def test_json_charset_utf8_accepted(api):
    body = json.dumps({"username": new_username(), "password": new_password()}).encode()
    response = api.post("/v1/users", data=body, headers={"Content-Type": "Application/JSON; charset=UTF-8"})
    assert response.status_code == 201, response.text


def test_body_over_limit_rejected(stack, api):
    # The shared gateway runs with --body-limit 32768.
    username = new_username("big")
    body = json.dumps({"username": username, "password": "p" * 10}).encode()
    body = body[:-1] + b" " * (32769 - len(body)) + b"}"
    assert len(body) == 32769
    assert_problem(api.post("/v1/users", data=body, headers=JSON), 413, "body-too-large")
    assert stack.database.query("SELECT id FROM users WHERE username = ?", (username,)) == []
    login = api.post("/v1/sessions", json={"username": username, "password": "p" * 10})
    assert_problem(login, 401, "invalid-credentials")


def test_body_at_limit_accepted(api):
    username = new_username("edge")
    body = json.dumps({"username": username, "password": new_password()}).encode()
    body = body[:-1] + b" " * (32768 - len(body)) + b"}"
    response = api.post("/v1/users", data=body, headers=JSON)
    assert response.status_code == 201, response.text


def test_default_body_limit(limited_stack):
    # limited_stack leaves --body-limit at its default of 16 KiB.
    with limited_stack.client() as client:
        body = json.dumps({"username": new_username("big"), "password": new_password()}).encode()
        over = body[:-1] + b" " * (16385 - len(body)) + b"}"
        assert_problem(client.post("/v1/users", data=over, headers=JSON), 413, "body-too-large")
        at_limit = body[:-1] + b" " * (16384 - len(body)) + b"}"
        assert client.post("/v1/users", data=at_limit, headers=JSON).status_code == 201


def test_chunked_body_over_limit_rejected(stack):
    chunk = b"x" * 20000
    request = (b"POST /v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" +
               f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
    response = stack.raw_request(request, "POST", "/v1/users")
    assert_problem(response, 413, "body-too-large")


@pytest.mark.parametrize("opening, closing", [(b"[", b"]"), (b'{"a":', b"}")], ids=["arrays", "objects"])
def test_deep_nesting_rejected(api, opening, closing):
    depth = 10000 if opening == b"[" else 5000
    nested = opening * depth + b"1" + closing * depth
    body = b'{"username":' + nested + b',"password":"abcdefgh1"}'
    assert len(body) <= 32768
    assert_problem(api.post("/v1/users", data=body, headers=JSON), 400, "invalid-json")


def test_moderate_nesting_rejected_as_member(api):
    # Nesting within the depth limit parses, and then fails the member check.
    body = b'{"username":[[[["x"]]]],"password":"abcdefgh1"}'
    assert_problem(api.post("/v1/users", data=body, headers=JSON), 400, "invalid-request")


def test_header_over_8kib_rejected(api):
    response = api.get("/healthz", headers={"X-Filler": "a" * 9000})
    assert_problem(response, 431, "header-too-large")


def test_many_header_fields_rejected(api):
    headers = {f"X-Field-{index}": "v" for index in range(100)}
    assert_problem(api.get("/healthz", headers=headers), 431, "header-too-large")


def test_header_fields_at_limit_accepted(api):
    # requests adds Host, User-Agent, Accept-Encoding, Accept and Connection.
    headers = {f"X-Field-{index}": "v" for index in range(55)}
    assert api.get("/healthz", headers=headers).status_code == 200


@pytest.mark.parametrize("framing", [
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
    b"Content-Length: 4\r\nTransfer-Encoding: gzip, chunked\r\n",
], ids=["cl_then_te", "te_then_cl", "te_list"])
def test_content_length_with_transfer_encoding_rejected(stack, framing):
    request = (b"POST /v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + framing +
               b"\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = stack.raw_request(request, "POST", "/v1/users")
    assert_problem(response, 400, "bad-request")
    assert response.closed, "the connection stayed open after an ambiguous request"


@pytest.mark.parametrize("framing", [b"Content-Length: 4\r\nContent-Length: 5\r\n", b"Content-Length: -1\r\n",
                                     b"Transfer-Encoding: identity\r\n"],
                         ids=["two_lengths", "negative_length", "identity_coding"])
def test_invalid_framing_rejected(stack, framing):
    request = b"POST /v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + framing + b"\r\n{}"
    response = stack.raw_request(request, "POST", "/v1/users")
    assert_problem(response, 400, "bad-request")
    assert response.closed


def test_missing_host_rejected(stack):
    response = stack.raw_request(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", "GET", "/healthz")
    assert_problem(response, 400, "bad-request")


def wait_for_close(connection, seconds):
    """True when the server closes the connection within ``seconds``; fails if it sends data."""
    connection.settimeout(seconds)
    try:
        received = connection.recv(4096)
    except TimeoutError:
        return False
    except OSError:
        return True
    assert received == b"", f"the server answered a request whose head never ended: {received[:200]!r}"
    return True


def timed_get(client, path):
    started = time.monotonic()
    response = client.get(path)
    return time.monotonic() - started, response


def test_slow_headers_disconnected(stack, api):
    """A client that trickles its head is cut off after --header-timeout (2 s) while others are served."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40
    closed_after = None
    with stack.open_tls(timeout=20) as connection, concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        connection.sendall(request[:1])
        served = pool.submit(timed_get, api, "/healthz")
        for index in range(1, 15):
            if wait_for_close(connection, 1.0):
                closed_after = time.monotonic() - started
                break
            try:
                connection.sendall(request[index:index + 1])
            except OSError:
                closed_after = time.monotonic() - started
                break
        elapsed, response = served.result(timeout=30)

    assert response.status_code == 200
    assert elapsed < 1.5, f"a normal request took {elapsed:.1f} s next to the slow client"
    assert closed_after is not None, "the slow connection stayed open for 15 s"
    assert 1.5 <= closed_after <= 6.0, f"closed after {closed_after:.1f} s; the header timeout is 2 s"


def test_unknown_path_not_found(api):
    for path in ("/v2/users", "/v1/users/", "/v1/users/me/extra", "/%2e%2e/etc/passwd", "/v1/Users"):
        assert_problem(api.get(path), 404, "not-found")


@pytest.mark.parametrize("method, path", [("GET", "/v1/users"), ("PUT", "/v1/users/me"), ("GET", "/v1/sessions"),
                                          ("POST", "/healthz"), ("DELETE", "/.well-known/jwks.json"),
                                          ("PATCH", "/signup")])
def test_wrong_method_not_allowed(api, method, path):
    response = api.request(method, path)
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["Allow"]
