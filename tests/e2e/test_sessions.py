"""Sessions: refresh rotation, reuse detection, logout, and the prototype's signup."""

import datetime

import pytest

from support import assert_problem, new_password, new_username


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def refresh(client, refresh_token):
    return client.post("/v1/sessions/refresh", json={"refresh_token": refresh_token})


def test_login_returns_token_pair(tokens):
    _, body = tokens
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900


def test_me_returns_account(api, tokens):
    (username, _, user_id), body = tokens
    response = api.get("/v1/users/me", headers=bearer(body["access_token"]))
    assert response.status_code == 200
    me = response.json()
    assert me["id"] == user_id
    assert me["username"] == username
    created_at = datetime.datetime.fromisoformat(me["created_at"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - created_at).total_seconds()) < 600


def test_signup_response(api):
    username = new_username()
    response = api.post("/v1/users", json={"username": username, "password": new_password()})
    assert response.status_code == 201
    assert response.headers["Location"] == "/v1/users/me"
    assert response.json()["username"] == username


def test_refresh_rotates(api, tokens):
    (_, _, user_id), first = tokens
    response = refresh(api, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    me = api.get("/v1/users/me", headers=bearer(second["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == user_id

    third = refresh(api, second["refresh_token"])
    assert third.status_code == 200, third.text
    assert third.json()["refresh_token"] not in (first["refresh_token"], second["refresh_token"])


def test_refresh_reuse_revokes_family(api, tokens):
    _, first = tokens
    rotated = refresh(api, first["refresh_token"])
    assert rotated.status_code == 200
    newest = rotated.json()

    assert_problem(refresh(api, first["refresh_token"]), 401, "invalid-refresh-token")
    assert_problem(refresh(api, newest["refresh_token"]), 401, "invalid-refresh-token")
    for access_token in (first["access_token"], newest["access_token"]):
        response = api.get("/v1/users/me", headers=bearer(access_token))
        assert_problem(response, 401, "invalid-token")
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_refresh_reuse_spares_other_sessions(api, account):
    username, password, _ = account
    sessions = []
    for _ in range(2):
        response = api.post("/v1/sessions", json={"username": username, "password": password})
        assert response.status_code == 200
        sessions.append(response.json())
    assert refresh(api, sessions[0]["refresh_token"]).status_code == 200
    assert_problem(refresh(api, sessions[0]["refresh_token"]), 401, "invalid-refresh-token")

    assert api.get("/v1/users/me", headers=bearer(sessions[1]["access_token"])).status_code == 200
    assert refresh(api, sessions[1]["refresh_token"]).status_code == 200


@pytest.mark.parametrize("value", ["", "x", "A" * 43, "A" * 200, "\u00e9" * 40], ids=["empty", "short", "unknown",
                                                                                       "long", "non_ascii"])
def test_unknown_refresh_token_rejected(api, value):
    assert_problem(refresh(api, value), 401, "invalid-refresh-token")


def test_access_token_not_refresh_token(api, tokens):
    _, body = tokens
    assert_problem(refresh(api, body["access_token"]), 401, "invalid-refresh-token")


def test_refresh_request_members(api, tokens):
    _, body = tokens
    assert_problem(api.post("/v1/sessions/refresh", json={}), 400, "invalid-request")
    assert_problem(api.post("/v1/sessions/refresh", json={"refresh_token": 1}), 400, "invalid-request")
    assert_problem(api.post("/v1/sessions/refresh", json={"refresh_token": body["refresh_token"], "scope": "x"}),
                   400, "invalid-request")
    # None of these used the token up.
    assert refresh(api, body["refresh_token"]).status_code == 200


def test_logout_revokes_session(api, tokens):
    _, body = tokens
    response = api.delete("/v1/sessions/current", headers=bearer(body["access_token"]))
    assert response.status_code == 204
    assert response.content == b""

    me = api.get("/v1/users/me", headers=bearer(body["access_token"]))
    assert_problem(me, 401, "invalid-token")
    assert me.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert_problem(refresh(api, body["refresh_token"]), 401, "invalid-refresh-token")
    assert_problem(api.delete("/v1/sessions/current", headers=bearer(body["access_token"])), 401, "invalid-token")


def test_logout_after_refresh_revokes_all(api, tokens):
    _, first = tokens
    second = refresh(api, first["refresh_token"]).json()
    assert api.delete("/v1/sessions/current", headers=bearer(first["access_token"])).status_code == 204
    assert_problem(api.get("/v1/users/me", headers=bearer(second["access_token"])), 401, "invalid-token")
    assert_problem(refresh(api, second["refresh_token"]), 401, "invalid-refresh-token")


def test_logout_without_token_rejected(api):
    response = api.delete("/v1/sessions/current")
    assert_problem(response, 401, "invalid-token")
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_prototype_signup(api):
    username, password = new_username("proto"), new_password()
    response = api.post("/signup", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    assert body["message"]
    assert body["username"] == username
    assert response.headers["Location"] == "/v1/users/me"
    assert api.post("/v1/sessions", json={"username": username, "password": password}).status_code == 200

    taken = api.post("/signup", json={"username": username, "password": password})
    problem = assert_problem(taken, 409, "username-taken")
    assert problem["success"] is False
    assert problem["message"] == problem["detail"]


@pytest.mark.parametrize("body, status, slug", [
    ({"username": "a b", "password": "abcdefgh1"}, 400, "invalid-username"),
    ({"username": "proto-short-pw", "password": "short"}, 400, "invalid-password"),
    ({"username": "proto-only"}, 400, "invalid-request"),
])
def test_prototype_signup_errors(api, body, status, slug):
    problem = assert_problem(api.post("/signup", json=body), status, slug)
    assert problem["success"] is False
    assert problem["message"]


def test_prototype_signup_media_type(api):
    response = api.post("/signup", data=b'{"username":"abcdef","password":"abcdefgh1"}',
                        headers={"Content-Type": "text/plain"})
    problem = assert_problem(response, 415, "unsupported-media-type")
    assert problem["success"] is False
