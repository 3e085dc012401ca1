#!/usr/bin/python3
"""Print bcrypt fixtures for password_test.cpp, made with Debian's python3-bcrypt.

python3-bcrypt carries its own bcrypt implementation, so the fixtures do not come from
libxcrypt, the library under test. Each run draws new salts and prints different hashes,
and any run's output is a valid fixture set.
"""
import bcrypt

COST = 10
FIXTURES = [
    ("kBcrypt2b", b"correct horse battery staple", b"2b"),
    ("kBcrypt2a", b"Tr0ub4dor&3", b"2a"),
    ("kBcryptUtf8", "pässwörd-ключ".encode("utf-8"), b"2b"),
    ("kBcrypt72", b"0123456789" * 7 + b"ab", b"2b"),
]

for name, password, prefix in FIXTURES:
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=COST, prefix=prefix))
    assert bcrypt.checkpw(password, hashed)
    print(f'constexpr std::string_view {name} = "{hashed.decode()}";')

# $2y$ is the same algorithm as $2b$ under another name, so the fixture is a $2b$ hash
# from python3-bcrypt with its prefix renamed, checked again by python3-bcrypt.
password = b"hunter2-hunter2"
hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=COST, prefix=b"2b"))
renamed = b"$2y$" + hashed[4:]
assert bcrypt.checkpw(password, renamed)
print(f'constexpr std::string_view kBcrypt2y = "{renamed.decode()}";')
