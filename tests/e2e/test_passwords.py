"""Password storage, read from the gateway's database: Argon2id, and imported bcrypt hashes."""

import bcrypt

from support import assert_problem, new_password, new_username


def stored_hash(stack, user_id):
    rows = stack.database.query("SELECT password_hash FROM users WHERE id = ?", (user_id,))
    assert len(rows) == 1, rows
    return rows[0][0]


def test_signup_stores_argon2id(stack, account):
    username, password, user_id = account
    stored = stored_hash(stack, user_id)
    assert stored.startswith("$argon2id$v=19$"), stored[:20]
    assert password not in stored
    assert username not in stored


def test_same_password_distinct_salts(stack, api):
    password = new_password()
    ids = []
    for _ in range(2):
        response = api.post("/v1/users", json={"username": new_username(), "password": password})
        assert response.status_code == 201
        ids.append(response.json()["id"])
    assert stored_hash(stack, ids[0]) != stored_hash(stack, ids[1])


def test_bcrypt_import_rehashed(stack, api):
    username = new_username("imported")
    password = "B" * 64 + "12345678"  # 72 bytes: all of it counts for bcrypt
    assert len(password.encode()) == 72
    created = api.post("/v1/users", json={"username": username, "password": new_password()})
    assert created.status_code == 201
    user_id = created.json()["id"]
    bcrypt_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10, prefix=b"2b")).decode()
    assert bcrypt_hash.startswith("$2b$10$")
    stack.database.query("UPDATE users SET password_hash = ? WHERE id = ?", (bcrypt_hash, user_id))

    # bcrypt reads only 72 bytes; a longer password must not match on its prefix.
    too_long = api.post("/v1/sessions", json={"username": username, "password": password + "X"})
    assert_problem(too_long, 401, "invalid-credentials")
    assert stored_hash(stack, user_id) == bcrypt_hash

    wrong = api.post("/v1/sessions", json={"username": username, "password": password[:-1] + "9"})
    assert_problem(wrong, 401, "invalid-credentials")

    response = api.post("/v1/sessions", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    rehashed = stored_hash(stack, user_id)
    assert rehashed.startswith("$argon2id$"), rehashed[:20]

    again = api.post("/v1/sessions", json={"username": username, "password": password})
    assert again.status_code == 200, again.text
    assert_problem(api.post("/v1/sessions", json={"username": username, "password": password + "X"}),
                   401, "invalid-credentials")


def test_bcrypt_2a_import_accepted(stack, api):
    username, password = new_username("legacy"), "legacy-password-1"
    created = api.post("/v1/users", json={"username": username, "password": new_password()})
    assert created.status_code == 201
    user_id = created.json()["id"]
    legacy = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10, prefix=b"2a")).decode()
    stack.database.query("UPDATE users SET password_hash = ? WHERE id = ?", (legacy, user_id))

    response = api.post("/v1/sessions", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    assert stored_hash(stack, user_id).startswith("$argon2id$")
