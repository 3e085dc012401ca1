"""Signups per client address are limited, and the limit does not touch logins."""

from support import assert_problem, new_password, new_username


def test_signup_limit_per_address(start_stack):
    stack = start_stack("signup-limit", ["--signup-limit", "3"])
    with stack.client() as client:
        password = new_password()
        names = [new_username("quota") for _ in range(3)]
        for name in names:
            created = client.post("/v1/users", json={"username": name, "password": password})
            assert created.status_code == 201, created.text

        rejected = client.post("/v1/users", json={"username": new_username("quota"), "password": password})
        assert_problem(rejected, 429, "too-many-signups")
        assert int(rejected.headers["Retry-After"]) >= 1

        prototype = client.post("/signup", json={"username": new_username("quota"), "password": password})
        assert prototype.status_code == 429
        assert prototype.json()["success"] is False

        login = client.post("/v1/sessions", json={"username": names[0], "password": password})
        assert login.status_code == 200, login.text


def test_invalid_signup_not_counted(start_stack):
    stack = start_stack("signup-limit-invalid", ["--signup-limit", "1"])
    with stack.client() as client:
        for _ in range(3):
            rejected = client.post("/v1/users", json={"username": "x", "password": new_password()})
            assert_problem(rejected, 400, "invalid-username")

        created = client.post("/v1/users", json={"username": new_username("quota"), "password": new_password()})
        assert created.status_code == 201, created.text
