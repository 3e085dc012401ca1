"""Access tokens: verification with PyJWT from the served JWKS, and forged tokens.

The forged tokens are built with PyJWT, python3-cryptography and by hand. Many are signed
with the gateway's real signing key, read from licensing-core's data directory, so that the
one property under test is the only thing wrong with them.
"""

import base64
import datetime
import hashlib
import hmac
import json
import random
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from support import assert_problem, new_password, new_username

AUDIENCE = "licensing-gateway"
ISSUER = "licensing-server"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def es256_signature(private_key, signing_input):
    """The JWS form of an ES256 signature: r and s as 32-byte big-endian integers."""
    r, s = decode_dss_signature(private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def compact(header, payload, private_key=None, signature=b""):
    """Build a compact JWS from a header and payload (dicts, or raw JSON text)."""
    header_text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    payload_text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    signing_input = f"{b64u(header_text)}.{b64u(payload_text)}"
    if private_key is not None:
        signature = es256_signature(private_key, signing_input)
    return f"{signing_input}.{b64u(signature)}"


def public_jwk_of(private_key, kid):
    numbers = private_key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64u(numbers.x.to_bytes(32, "big")),
            "y": b64u(numbers.y.to_bytes(32, "big")), "kid": kid}


def self_signed_certificate(private_key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "licensing-server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(private_key, hashes.SHA256()))


class TokenKit:
    """A real session's token and the material needed to forge variants of it."""

    def __init__(self, stack, client):
        username, password = new_username("jwt"), new_password()
        created = client.post("/v1/users", json={"username": username, "password": password})
        assert created.status_code == 201, created.text
        self.user_id = created.json()["id"]
        login = client.post("/v1/sessions", json={"username": username, "password": password})
        assert login.status_code == 200, login.text
        self.token = login.json()["access_token"]
        self.jwks = client.get("/.well-known/jwks.json").json()
        self.kid, pem = stack.signing_key_pem()
        self.private_key = serialization.load_pem_private_key(pem, password=None)
        self.header = json.loads(b64u_decode(self.token.split(".")[0]))
        self.claims = json.loads(b64u_decode(self.token.split(".")[1]))
        self.attacker_key = ec.generate_private_key(ec.SECP256R1())

    def claims_with(self, **changes):
        claims = dict(self.claims)
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def fresh_claims(self, **changes):
        """The session's claims with a current iat, nbf and exp, then ``changes`` applied."""
        now = int(time.time())
        return {**self.claims_with(iat=now, nbf=now, exp=now + 900), **changes}

    def sign(self, claims, **header_members):
        """Sign with the real key; header_members are added to {alg, typ, kid} (None removes one)."""
        header = {"alg": "ES256", "typ": "JWT", "kid": self.kid}
        for name, value in header_members.items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return compact(header, claims, self.private_key)

    def sign_with_attacker_key(self, claims, **header_members):
        header = {"alg": "ES256", "typ": "JWT", "kid": self.kid, **header_members}
        return compact(header, claims, self.attacker_key)

    def server_public_key(self):
        jwk = next(key for key in self.jwks["keys"] if key["kid"] == self.kid)
        return jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(jwk))


@pytest.fixture(scope="module")
def kit(stack):
    with stack.client() as client:
        yield TokenKit(stack, client)


def assert_rejected(client, token):
    response = client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401, "invalid-token")
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def assert_accepted(client, token, user_id):
    response = client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user_id


def test_token_verifies_with_pyjwt(kit, api):
    jwks_keys = {key["kid"]: key for key in kit.jwks["keys"]}
    assert kit.header == {"alg": "ES256", "typ": "JWT", "kid": kit.kid}
    assert kit.kid in jwks_keys

    key = jwt.PyJWK(jwks_keys[kit.kid]).key
    claims = jwt.decode(kit.token, key, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER,
                        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]})
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid"}
    assert claims["sub"] == kit.user_id
    assert claims["aud"] == AUDIENCE
    assert claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 900
    assert claims["nbf"] <= time.time() + 5
    assert abs(claims["iat"] - time.time()) < 120
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert isinstance(claims["sid"], str) and claims["sid"]

    other = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(jwks_keys[kit.kid]))
    assert other.public_numbers() == key.public_numbers()
    assert_accepted(api, kit.token, kit.user_id)


def test_jwks_kid_is_thumbprint(kit):
    for key in kit.jwks["keys"]:
        canonical = json.dumps({"crv": key["crv"], "kty": key["kty"], "x": key["x"], "y": key["y"]},
                               separators=(",", ":"), sort_keys=True)
        assert key["kid"] == b64u(hashlib.sha256(canonical.encode()).digest())


def test_token_pyjwt_rejects_wrong_audience(kit):
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(kit.token, kit.server_public_key(), algorithms=["ES256"], audience="enclave-1", issuer=ISSUER)


def test_resigned_control_accepted(kit, api):
    # Proves that tokens signed here are what the server expects, so the rejections below
    # are caused by the one property each of them changes.
    assert_accepted(api, kit.sign(kit.fresh_claims()), kit.user_id)
    assert_accepted(api, jwt.encode(kit.fresh_claims(), kit.private_key, algorithm="ES256",
                                    headers={"kid": kit.kid}), kit.user_id)


CLAIM_CASES = {
    "expired": lambda now: {"iat": now - 2000, "nbf": now - 2000, "exp": now - 1100},
    "expired_beyond_skew": lambda now: {"iat": now - 960, "nbf": now - 960, "exp": now - 60},
    "nbf_in_future": lambda now: {"iat": now, "nbf": now + 600, "exp": now + 900},
    "iat_in_future": lambda now: {"iat": now + 300, "nbf": now, "exp": now + 1200},
    "lifetime_too_long": lambda now: {"iat": now, "nbf": now, "exp": now + 7200},
    "exp_before_iat": lambda now: {"iat": now, "nbf": now, "exp": now - 1},
    "exp_as_string": lambda now: {"exp": str(now + 900)},
    "exp_as_float": lambda now: {"exp": now + 900.5},
    "wrong_aud": lambda now: {"aud": "enclave-0001"},
    "aud_without_gateway": lambda now: {"aud": ["enclave-0001", "enclave-0002"]},
    "wrong_iss": lambda now: {"iss": "someone-else"},
    "missing_exp": lambda now: {"exp": None},
    "missing_sub": lambda now: {"sub": None},
    "missing_sid": lambda now: {"sid": None},
    "missing_jti": lambda now: {"jti": None},
    "sub_as_number": lambda now: {"sub": 12345},
}


@pytest.mark.parametrize("case", sorted(CLAIM_CASES))
def test_claim_forgery_rejected(kit, api, case):
    now = int(time.time())
    claims = kit.fresh_claims()
    for name, value in CLAIM_CASES[case](now).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    assert_rejected(api, kit.sign(claims))


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "nOnE"])
def test_alg_none_rejected(kit, api, spelling):
    header = {"alg": spelling, "typ": "JWT", "kid": kit.kid}
    unsigned = compact(header, kit.fresh_claims())
    assert_rejected(api, unsigned)
    real_signature = kit.token.split(".")[2]
    assert_rejected(api, unsigned + real_signature)
    assert_rejected(api, unsigned.rstrip("."))


def hs256_token(kit, secret):
    header = {"alg": "HS256", "typ": "JWT", "kid": kit.kid}
    signing_input = f"{b64u(json.dumps(header))}.{b64u(json.dumps(kit.fresh_claims()))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64u(signature)}"


def test_hs256_with_public_key_rejected(kit, api):
    public_key = kit.private_key.public_key()
    for encoding, form in ((serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
                           (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
                           (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)):
        assert_rejected(api, hs256_token(kit, public_key.public_bytes(encoding, form)))


def test_hs256_with_jwk_rejected(kit, api):
    jwk = next(key for key in kit.jwks["keys"] if key["kid"] == kit.kid)
    for text in (json.dumps(jwk), json.dumps(jwk, separators=(",", ":")), json.dumps(jwk, sort_keys=True)):
        assert_rejected(api, hs256_token(kit, text.encode()))


def key_choosing_members(kit, jwks_url):
    attacker_jwk = public_jwk_of(kit.attacker_key, kit.kid)
    certificate = self_signed_certificate(kit.attacker_key).public_bytes(serialization.Encoding.DER)
    # The URLs name this test's own gateway on loopback, so nothing outside is ever named.
    return {
        "jwk": attacker_jwk,
        "jku": jwks_url,
        "x5u": jwks_url,
        "x5c": [base64.b64encode(certificate).decode()],
    }


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c"])
def test_key_choosing_header_rejected(kit, api, stack, member):
    value = key_choosing_members(kit, f"{stack.url}/.well-known/jwks.json")[member]
    # The classic attack: the token names the attacker's key and is signed with it.
    assert_rejected(api, kit.sign_with_attacker_key(kit.fresh_claims(), **{member: value}))
    # The member alone, on a token the real key signed, is not accepted either.
    assert_rejected(api, kit.sign(kit.fresh_claims(), **{member: value}))


@pytest.mark.parametrize("crit", [["exp"], ["x-licensing"], []])
def test_crit_header_rejected(kit, api, crit):
    assert_rejected(api, kit.sign(kit.fresh_claims(), crit=crit, **{"x-licensing": True}))


def test_unknown_typ_rejected(kit, api):
    assert_rejected(api, kit.sign(kit.fresh_claims(), typ="at+jwt-other"))


@pytest.mark.parametrize("kid", ["", "../../etc/passwd", "A" * 300, "unknown-key-0123456789", None],
                         ids=["empty", "path", "300_chars", "unknown", "missing"])
def test_bad_kid_rejected(kit, api, kid):
    assert_rejected(api, kit.sign(kit.fresh_claims(), kid=kid))


def test_kid_as_number_rejected(kit, api):
    assert_rejected(api, kit.sign(kit.fresh_claims(), kid=7))


def set_unused_bits(segment):
    """Change the last base64url character so that the bits past the data are not zero."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused_bits = {2: 4, 3: 2}[len(segment) % 4]
    value = alphabet.index(segment[-1]) | 1
    assert value & ((1 << unused_bits) - 1)
    return segment[:-1] + alphabet[value]


def test_noncanonical_base64url_rejected(kit, api):
    token = kit.sign(kit.fresh_claims())
    header, payload, signature = token.split(".")
    assert len(signature) % 4 == 2  # 64 bytes leave 4 unused bits in the last character

    variants = [f"{header}.{payload}.{set_unused_bits(signature)}",
                f"{header}.{payload}.{signature}==",
                f"{header}.{payload}.{base64.b64encode(b64u_decode(signature)).decode()}"]
    for index, segment in ((0, header), (1, payload)):
        parts = [header, payload, signature]
        if len(segment) % 4 in (2, 3):
            parts[index] = set_unused_bits(segment)
            variants.append(".".join(parts))
        parts = [header, payload, signature]
        parts[index] = segment + "=" * (-len(segment) % 4 or 4)
        variants.append(".".join(parts))
    # Sanity: the lenient decoder reads each variant as the original bytes.
    for variant in variants:
        assert [b64u_decode(part.rstrip("=").replace("+", "-").replace("/", "_"))
                for part in variant.split(".")] == [b64u_decode(part) for part in token.split(".")]
    for variant in variants:
        assert_rejected(api, variant)
    assert_accepted(api, token, kit.user_id)


def test_duplicate_header_member_rejected(kit, api):
    claims = json.dumps(kit.fresh_claims())
    for header in (f'{{"alg":"ES256","typ":"JWT","kid":"{kit.kid}","alg":"ES256"}}',
                   f'{{"alg":"none","typ":"JWT","kid":"{kit.kid}","alg":"ES256"}}',
                   f'{{"alg":"ES256","typ":"JWT","kid":"unknown","kid":"{kit.kid}"}}'):
        assert_rejected(api, compact(header, claims, kit.private_key))


def test_duplicate_payload_member_rejected(kit, api):
    claims = kit.fresh_claims()
    header = {"alg": "ES256", "typ": "JWT", "kid": kit.kid}
    body = json.dumps(claims)[:-1]
    for extra in (f',"sub":"{claims["sub"]}"', ',"sub":"00000000-0000-4000-8000-000000000000"',
                  f',"exp":{claims["exp"] + 100}', f',"aud":"{AUDIENCE}"'):
        assert_rejected(api, compact(header, body + extra + "}", kit.private_key))


def ecdsa_variants(signature, der_signature):
    r, s = signature[:32], signature[32:]
    order = P256_ORDER.to_bytes(32, "big")
    zero = bytes(32)
    return {
        "r_zero": zero + s,
        "s_zero": r + zero,
        "both_zero": zero + zero,
        "r_order": order + s,
        "s_order": r + order,
        "63_bytes": signature[:63],
        "65_bytes": signature + b"\x00",
        "65_bytes_leading_zero": b"\x00" + signature,
        "der_encoded": der_signature,
        "empty": b"",
    }


def test_invalid_ecdsa_values_rejected(kit, api):
    token = kit.sign(kit.fresh_claims())
    signing_input, _, encoded = token.rpartition(".")
    der_signature = kit.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    for name, variant in ecdsa_variants(b64u_decode(encoded), der_signature).items():
        response = api.get("/v1/users/me", headers={"Authorization": f"Bearer {signing_input}.{b64u(variant)}"})
        assert response.status_code == 401, f"signature {name}: {response.status_code} {response.text}"
        assert response.json()["type"] == "urn:licensing:problem:invalid-token", name


def test_high_s_signature(kit, api):
    # ECDSA signatures are malleable: (r, n - s) verifies too. RFC 7518 does not forbid it,
    # so either answer is acceptable, but it must be one of the two documented ones.
    token = kit.sign(kit.fresh_claims())
    signing_input, _, encoded = token.rpartition(".")
    signature = b64u_decode(encoded)
    flipped_s = (P256_ORDER - int.from_bytes(signature[32:], "big")).to_bytes(32, "big")
    response = api.get("/v1/users/me", headers={"Authorization": f"Bearer {signing_input}.{b64u(signature[:32] + flipped_s)}"})
    assert response.status_code in (200, 401)


def test_oversized_token_rejected(kit, api):
    # Past 8 KiB the header section itself is over the server's limit, so the request is
    # refused with 431 before the token is read.
    padding = "A" * (9 * 1024)
    response = api.get("/v1/users/me", headers={"Authorization": f"Bearer {kit.token}{padding}"})
    assert_problem(response, 431, "header-too-large")
    # Just under the limit it reaches the verifier, which rejects it.
    header = {"alg": "ES256", "typ": "JWT", "kid": kit.kid}
    claims = kit.fresh_claims(pad="x" * 5000)
    large = compact(header, claims, kit.attacker_key)
    assert 7000 < len(large) < 8000
    assert_rejected(api, large)


def test_foreign_key_with_real_kid_rejected(kit, api):
    assert_rejected(api, kit.sign_with_attacker_key(kit.fresh_claims()))
    assert_rejected(api, jwt.encode(kit.fresh_claims(), kit.attacker_key, algorithm="ES256", headers={"kid": kit.kid}))


def test_flipped_signature_bits_rejected(kit, api):
    token = kit.sign(kit.fresh_claims())
    signing_input, _, encoded = token.rpartition(".")
    signature = bytearray(b64u_decode(encoded))
    positions = sorted(random.Random(20240607).sample(range(len(signature) * 8), 64))
    accepted = []
    for position in positions:
        flipped = bytearray(signature)
        flipped[position // 8] ^= 0x80 >> (position % 8)
        response = api.get("/v1/users/me", headers={"Authorization": f"Bearer {signing_input}.{b64u(bytes(flipped))}"})
        if response.status_code != 401:
            accepted.append((position, response.status_code))
    assert accepted == []
    assert_accepted(api, token, kit.user_id)


@pytest.mark.parametrize("change", ["sub", "exp", "sid", "aud", "jti"])
def test_tampered_claim_rejected(kit, api, change):
    header, payload, signature = kit.token.split(".")
    claims = json.loads(b64u_decode(payload))
    claims[change] = claims[change] + 60 if isinstance(claims[change], int) else claims[change][:-1] + (
        "0" if claims[change][-1] != "0" else "1")
    assert_rejected(api, f"{header}.{b64u(json.dumps(claims, separators=(',', ':')))}.{signature}")


def test_two_authorization_headers_rejected(kit, stack):
    for first, second in ((kit.token, "garbage"), ("garbage", kit.token), (kit.token, kit.token)):
        request = (f"GET /v1/users/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {first}\r\n"
                   f"Authorization: Bearer {second}\r\nConnection: close\r\n\r\n").encode()
        response = stack.raw_request(request, "GET", "/v1/users/me")
        assert_problem(response, 401, "invalid-token")
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("value", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token {token}",
                                   "Bearer {token} extra", "Bearer {token}.", "{token}"],
                         ids=["empty", "scheme_only", "scheme_space", "basic", "other_scheme", "two_words",
                              "trailing_dot", "no_scheme"])
def test_malformed_authorization_rejected(kit, api, value):
    response = api.get("/v1/users/me", headers={"Authorization": value.format(token=kit.token)})
    assert_problem(response, 401, "invalid-token")


def test_missing_authorization_rejected(api):
    response = api.get("/v1/users/me")
    assert_problem(response, 401, "invalid-token")
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_unknown_session_rejected(kit, api):
    # Correctly signed, but its sid names no session: the token must not be honoured, and
    # the client caused the failure, so the answer is 401 rather than 503.
    other_session = "00000000-0000-4000-8000-000000000000"
    assert_rejected(api, kit.sign(kit.fresh_claims(sid=other_session)))
