"""Checks that run after every other test: nothing was lost and nothing failed inside the server."""

import pytest

from support import RESPONSES


@pytest.mark.final
def test_first_account_still_works(stack, api):
    username, password, user_id = stack.first_account
    response = api.post("/v1/sessions", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    me = api.get("/v1/users/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == user_id


@pytest.mark.final
def test_servers_still_running(stack):
    assert stack.exit_codes() == {"core": None, "gateway": None}
    assert stack.client().get("/readyz").status_code == 200


@pytest.mark.final
def test_no_server_errors():
    assert RESPONSES.entries
    errors = [entry for entry in RESPONSES.entries if entry[2] >= 500 and entry[2] != 503]
    assert errors == []


@pytest.mark.final
def test_no_server_crashes():
    assert RESPONSES.crashes == []


@pytest.mark.final
def test_no_spec_violations():
    assert RESPONSES.spec_failures == []
