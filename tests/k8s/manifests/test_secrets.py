"""The sops-encrypted Secrets: the committed examples' format, and a round trip through
deploy/secrets/encrypt and the independent sops-age decrypter with a fresh age identity."""

import base64
import hashlib
import re
import subprocess

import pytest
import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import COMMAND_TIMEOUT_SECONDS, DEPLOY, REPOSITORY, SCHEMA_DIRECTORY, find, required_tool

ENCRYPT = DEPLOY / "secrets" / "encrypt"
ENCRYPTED_VALUE = re.compile(r"^ENC\[AES256_GCM,data:([A-Za-z0-9+/=]+),iv:([A-Za-z0-9+/=]+),"
                             r"tag:([A-Za-z0-9+/=]+),type:(str|int)\]$")
COMMITTED = sorted((DEPLOY / "secrets").glob("*.sops.yaml"))

PLAINTEXT = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "round-trip", "namespace": "licensing", "labels": {"app.kubernetes.io/part-of": "licensing"}},
    "type": "Opaque",
    "stringData": {"password": "correct horse battery staple", "port": 5432, "url": "postgresql://u:p@h:5432/d"},
    "data": {"blob": base64.b64encode(b"\x00\x01binary").decode()},
}


def example_recipient() -> str:
    return yaml.safe_load((REPOSITORY / ".sops.yaml").read_text())["creation_rules"][0]["age"]


def leaf_values(node):
    """Yield every leaf value in document order, as sops walks a tree for its MAC."""
    if isinstance(node, dict):
        for child in node.values():
            yield from leaf_values(child)
    elif isinstance(node, list):
        for child in node:
            yield from leaf_values(child)
    else:
        yield node


@pytest.fixture
def identity(tmp_path):
    """A throwaway age identity: (identity file, recipient)."""
    key_file = tmp_path / "identity.txt"
    result = subprocess.run([required_tool("age-keygen"), "-o", str(key_file)], capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT_SECONDS, check=True)
    recipient = re.search(r"age1[0-9a-z]{58}", result.stderr).group(0)
    return key_file, recipient


def encrypt(plaintext: dict, recipient: str, tmp_path) -> str:
    source = tmp_path / "plaintext.yaml"
    source.write_text(yaml.safe_dump(plaintext, sort_keys=False))
    result = subprocess.run(["/usr/bin/python3", str(ENCRYPT), "--recipient", recipient, str(source)],
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr
    return result.stdout


def decrypt_with_sops_age(identity_file, encrypted_text: str, tmp_path) -> subprocess.CompletedProcess:
    encrypted = tmp_path / "encrypted.sops.yaml"
    encrypted.write_text(encrypted_text)
    return subprocess.run([required_tool("node"), str(SCHEMA_DIRECTORY / "sops-decrypt.mjs"), str(identity_file),
                           str(encrypted)], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_example_has_no_plaintext(path):
    document = yaml.safe_load(path.read_text())
    sops = document["sops"]

    assert document["kind"] == "Secret"
    assert set(document) & {"data", "stringData"}
    for section in ("data", "stringData"):
        for key, value in document.get(section, {}).items():
            match = ENCRYPTED_VALUE.match(str(value))
            assert match, f"{path.name}: {section}.{key} is not sops-encrypted"
            assert len(base64.b64decode(match.group(2))) == 32, f"{section}.{key}: IV is not 32 bytes"
            assert len(base64.b64decode(match.group(3))) == 16, f"{section}.{key}: tag is not 16 bytes"
    assert [entry["recipient"] for entry in sops["age"]] == [example_recipient()]
    assert sops["age"][0]["enc"].startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert ENCRYPTED_VALUE.match(sops["mac"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", sops["lastmodified"])
    assert sops["encrypted_regex"] == "^(data|stringData)$"


def test_committed_examples_cover_referenced_secrets(production):
    committed = {(yaml.safe_load(p.read_text())["metadata"]["namespace"], yaml.safe_load(p.read_text())["metadata"]["name"])
                 for p in COMMITTED}
    deployment = find(production, "Deployment", "licensing", "licensing")
    statefulset = find(production, "StatefulSet", "licensing-postgres", "licensing")
    referenced = set()
    for workload in (deployment, statefulset):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env", []):
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    referenced.add(("licensing", reference["name"]))
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in volume and not volume["secret"]["secretName"].endswith("-tls"):
                referenced.add(("licensing", volume["secret"]["secretName"]))

    assert referenced == committed


def test_round_trip_through_sops_age(identity, tmp_path):
    identity_file, recipient = identity

    encrypted_text = encrypt(PLAINTEXT, recipient, tmp_path)
    result = decrypt_with_sops_age(identity_file, encrypted_text, tmp_path)

    assert "correct horse" not in encrypted_text
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == PLAINTEXT


def test_mac_matches_decrypted_values(identity, tmp_path):
    identity_file, recipient = identity
    encrypted = yaml.safe_load(encrypt(PLAINTEXT, recipient, tmp_path))
    sops = encrypted.pop("sops")

    # The age program, not the encrypt script, recovers the data key for this check.
    data_key = subprocess.run([required_tool("age"), "--decrypt", "--identity", str(identity_file)],
                              input=sops["age"][0]["enc"].encode(), capture_output=True,
                              timeout=COMMAND_TIMEOUT_SECONDS, check=True).stdout
    data, iv, tag, _ = ENCRYPTED_VALUE.match(sops["mac"]).groups()
    mac = AESGCM(data_key).decrypt(base64.b64decode(iv), base64.b64decode(data) + base64.b64decode(tag),
                                   sops["lastmodified"].encode()).decode()
    expected = hashlib.sha512(b"".join(str(value).encode() for value in leaf_values(PLAINTEXT))).hexdigest().upper()

    assert len(data_key) == 32
    assert mac == expected


def test_changed_ciphertext_rejected(identity, tmp_path):
    identity_file, recipient = identity
    encrypted = yaml.safe_load(encrypt(PLAINTEXT, recipient, tmp_path))
    data, iv, tag, value_type = ENCRYPTED_VALUE.match(encrypted["stringData"]["password"]).groups()
    flipped = bytearray(base64.b64decode(data))
    flipped[0] ^= 1
    encrypted["stringData"]["password"] = (f"ENC[AES256_GCM,data:{base64.b64encode(flipped).decode()},iv:{iv},"
                                           f"tag:{tag},type:{value_type}]")

    result = decrypt_with_sops_age(identity_file, yaml.safe_dump(encrypted, sort_keys=False), tmp_path)

    assert result.returncode == 1
    assert "password" in result.stderr


def test_value_moved_to_other_key_rejected(identity, tmp_path):
    identity_file, recipient = identity
    encrypted = yaml.safe_load(encrypt(PLAINTEXT, recipient, tmp_path))
    encrypted["stringData"]["url"] = encrypted["stringData"]["password"]

    result = decrypt_with_sops_age(identity_file, yaml.safe_dump(encrypted, sort_keys=False), tmp_path)

    assert result.returncode == 1
    assert "url" in result.stderr


def test_other_identity_rejected(identity, tmp_path):
    _, recipient = identity
    other_file = tmp_path / "other.txt"
    subprocess.run([required_tool("age-keygen"), "-o", str(other_file)], capture_output=True,
                   timeout=COMMAND_TIMEOUT_SECONDS, check=True)

    result = decrypt_with_sops_age(other_file, encrypt(PLAINTEXT, recipient, tmp_path), tmp_path)

    assert result.returncode == 1
    assert "No matching recipient" in result.stderr


@pytest.mark.parametrize("value, message", [("", "is empty"), (1.5, "is a float"), (True, "is a bool")])
def test_unsupported_value_rejected(value, message, identity, tmp_path):
    _, recipient = identity
    source = tmp_path / "plaintext.yaml"
    source.write_text(yaml.safe_dump({"kind": "Secret", "stringData": {"key": value}}))

    result = subprocess.run(["/usr/bin/python3", str(ENCRYPT), "--recipient", recipient, str(source)],
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)

    assert result.returncode == 1
    assert f"value at stringData:key {message}" in result.stderr
