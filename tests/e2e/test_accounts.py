"""Signup and login: username rules, password limits, duplicates and failed-login limits."""

import concurrent.futures
import secrets
import unicodedata

import pytest

from support import assert_problem, new_password, new_username

# Latin letters whose Cyrillic look-alikes are single code points.
CYRILLIC_LOOK_ALIKES = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445",
                        "y": "\u0443"}


def letters_only_name(alphabet="abcdefghjkmnpqrstuvwxyz", length=12):
    return "".join(secrets.choice(alphabet) for _ in range(length))


def signup(client, username, password=None):
    return client.post("/v1/users", json={"username": username, "password": new_password() if password is None else password})


def login(client, username, password):
    return client.post("/v1/sessions", json={"username": username, "password": password})


INVALID_USERNAMES = {
    "empty": "",
    "too_short": "ab",
    "too_long": "a" * 33,
    "too_long_bytes": "\u00e9" * 129,
    "space": "has space",
    "leading_space": " alice1",
    "tab": "ali\tce",
    "emoji": "alice\U0001F600",
    "zwj": "ali\u200dce",
    "zero_width_space": "ali\u200bce",
    "soft_hyphen": "ali\u00adce",
    "rtl_override": "ali\u202ece",
    "nul": "ali\x00ce",
    "leading_dot": ".alice",
    "trailing_dot": "alice.",
    "double_dot": "a..b",
    "leading_hyphen": "-alice",
    "dot_underscore": "a._b",
    "slash": "a/b/c",
    "at_sign": "alice@example",
    "mixed_latin_cyrillic": "p\u0430ypal",
    "mixed_latin_greek": "\u03b1lpha",
    "hangul_filler": "ali\u3164ce",
    "combining_first": "\u0301alice",
}


@pytest.mark.parametrize("name", sorted(INVALID_USERNAMES))
def test_invalid_username_rejected(api, name):
    assert_problem(signup(api, INVALID_USERNAMES[name]), 400, "invalid-username")


def test_valid_usernames_accepted(api):
    suffix = letters_only_name(length=6)
    digits = f"{secrets.randbelow(10 ** 6):06d}"
    for username in (f"ab{suffix}"[:3], f"a.b_c-{suffix}", f"\u00e9l\u00e8ve{suffix}",
                     f"\u0431\u043e\u0440\u0438\u0441-{digits}", f"\u5c71\u7530{digits}", "z" * 26 + digits):
        response = signup(api, username)
        assert response.status_code == 201, f"{username!r}: {response.text}"
        assert response.json()["username"] == unicodedata.normalize("NFC", username)


def test_username_case_variant_taken(api):
    base = letters_only_name()
    assert signup(api, base).status_code == 201
    assert_problem(signup(api, base.upper()), 409, "username-taken")
    assert_problem(signup(api, base.capitalize()), 409, "username-taken")


def test_username_nfd_variant_taken(api):
    base = "jos\u00e9" + letters_only_name()
    assert signup(api, base).status_code == 201
    decomposed = unicodedata.normalize("NFD", base)
    assert decomposed != base
    assert_problem(signup(api, decomposed), 409, "username-taken")


def test_username_fullwidth_variant_taken(api):
    base = letters_only_name()
    assert signup(api, base).status_code == 201
    fullwidth = "".join(chr(ord(letter) - ord("a") + 0xFF41) for letter in base)
    assert_problem(signup(api, fullwidth), 409, "username-taken")


def test_username_cyrillic_look_alike_rejected(api):
    base = "al" + letters_only_name("aceopxy", 10)
    assert signup(api, base).status_code == 201

    one_letter = base.replace("a", CYRILLIC_LOOK_ALIKES["a"], 1)
    response = signup(api, one_letter)
    assert response.status_code in (400, 409), response.text
    expected = {400: "invalid-username", 409: "username-taken"}[response.status_code]
    assert response.json()["type"] == f"urn:licensing:problem:{expected}"

    # A name written wholly in Cyrillic look-alikes of a Latin name's letters.
    latin = letters_only_name("aceopxy", 12)
    assert signup(api, latin).status_code == 201
    cyrillic = "".join(CYRILLIC_LOOK_ALIKES[letter] for letter in latin)
    response = signup(api, cyrillic)
    assert response.status_code in (400, 409), response.text
    expected = {400: "invalid-username", 409: "username-taken"}[response.status_code]
    assert response.json()["type"] == f"urn:licensing:problem:{expected}"


def test_duplicate_signup_keeps_first_password(api):
    username, first, second = new_username(), new_password(), new_password()
    assert signup(api, username, first).status_code == 201
    assert_problem(signup(api, username, second), 409, "username-taken")
    assert login(api, username, first).status_code == 200
    assert_problem(login(api, username, second), 401, "invalid-credentials")


@pytest.mark.parametrize("password", ["", "short77", "a" * 1025, "\u00e9" * 512 + "a", "abcd\x00efgh"],
                         ids=["empty", "seven_bytes", "1025_bytes", "1025_bytes_utf8", "nul"])
def test_invalid_signup_password_rejected(api, password):
    username = new_username()
    assert_problem(signup(api, username, password), 400, "invalid-password")
    assert_problem(login(api, username, "whatever-it-is"), 401, "invalid-credentials")


@pytest.mark.parametrize("password", ["", "a" * 1025, "abcd\x00efgh"], ids=["empty", "1025_bytes", "nul"])
def test_invalid_login_password_rejected(api, account, password):
    username, _, _ = account
    assert_problem(login(api, username, password), 400, "invalid-password")


@pytest.mark.parametrize("password", ["a" * 1024, "\u00e9" * 512, "12345678"], ids=["1024_ascii", "1024_utf8", "8_bytes"])
def test_boundary_password_works(api, password):
    username = new_username()
    assert signup(api, username, password).status_code == 201
    assert login(api, username, password).status_code == 200
    assert_problem(login(api, username, password[:-1]), 401, "invalid-credentials")


def test_login_failures_indistinguishable(api, account):
    username, password, _ = account
    wrong = login(api, username, password + "x")
    unknown = login(api, new_username("nobody"), password)
    invalid_name = login(api, "no such user!", password)
    for response in (wrong, unknown, invalid_name):
        assert_problem(response, 401, "invalid-credentials")
    assert wrong.content == unknown.content == invalid_name.content
    ignored = {"date"}
    assert ({name.lower(): value for name, value in wrong.headers.items() if name.lower() not in ignored} ==
            {name.lower(): value for name, value in unknown.headers.items() if name.lower() not in ignored})


def test_parallel_guesses_locked_after_five(stack, account):
    username, password, _ = account

    def guess(index):
        with stack.client() as client:
            return login(client, username, f"wrong-{index}-{secrets.token_hex(4)}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(guess, range(50)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == 45, statuses
    for response in responses:
        if response.status_code == 429:
            assert_problem(response, 429, "too-many-attempts")
            assert 1 <= int(response.headers["Retry-After"]) <= 900
        else:
            assert_problem(response, 401, "invalid-credentials")

    with stack.client() as client:
        other_name, other_password = new_username(), new_password()
        assert signup(client, other_name, other_password).status_code == 201
        assert login(client, other_name, other_password).status_code == 200
        # A login to another account resets nothing, so even the right password gets 429 now.
        assert_problem(login(client, username, password), 429, "too-many-attempts")
        assert_problem(login(client, username, "still-wrong-1"), 429, "too-many-attempts")


def test_account_limit_counts_case_variants(stack, api, account):
    username, password, _ = account
    for index in range(5):
        variant = username.upper() if index % 2 else username
        assert_problem(login(api, variant, f"wrong-{index}"), 401, "invalid-credentials")
    assert_problem(login(api, username.upper(), password), 429, "too-many-attempts")


def test_success_resets_account_failures(api, account):
    username, password, _ = account
    for round_number in range(2):
        for index in range(4):
            assert_problem(login(api, username, f"wrong-{round_number}-{index}"), 401, "invalid-credentials")
        assert login(api, username, password).status_code == 200


def test_address_limit(limited_stack):
    with limited_stack.client() as client:
        username, password = new_username(), new_password()
        assert signup(client, username, password).status_code == 201
        # Five failures, each at a different account, use up this address's budget.
        for index in range(5):
            assert_problem(login(client, new_username("spray"), f"guess-{index}"), 401, "invalid-credentials")
        response = login(client, new_username("spray"), "guess-5")
        assert_problem(response, 429, "too-many-attempts")
        assert 1 <= int(response.headers["Retry-After"]) <= 900
        assert_problem(login(client, username, password), 429, "too-many-attempts")
        # Signup does not count as a login failure and is not limited.
        assert signup(client, new_username(), new_password()).status_code == 201
