"""Operational endpoints: health, readiness, metrics and the key set."""

import re
import signal
import subprocess
import time

from support import assert_problem, new_password, new_username

# Label values are quoted and may contain braces (route="/v1/enclaves/{id}").
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? ([-+]?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')


def parse_metrics(text):
    """Return {(name, frozenset of label pairs): value} and the set of metric names with a TYPE line."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples, typed


def logins_by_outcome(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    samples, _ = parse_metrics(response.text)
    counts = {}
    for (name, labels), value in samples.items():
        if name == "licensing_logins_total":
            counts[dict(labels)["outcome"]] = value
    return counts


def test_healthz(api):
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz(api):
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": True, "core": True}}


def test_metrics_format(api):
    response = api.get("/metrics")
    assert response.status_code == 200
    content_type = response.headers["Content-Type"].replace(" ", "").lower()
    assert content_type.startswith("text/plain;")
    assert "version=0.0.4" in content_type.split(";")
    samples, typed = parse_metrics(response.text)
    assert samples
    assert {"licensing_logins_total", "licensing_signups_total", "licensing_http_requests_total"} <= typed


def test_metrics_count_logins(api, account):
    username, password, _ = account
    before = logins_by_outcome(api)
    assert api.post("/v1/sessions", json={"username": username, "password": password}).status_code == 200
    assert_problem(api.post("/v1/sessions", json={"username": username, "password": "wrong-password"}),
                   401, "invalid-credentials")
    after = logins_by_outcome(api)
    assert after.get("success", 0) >= before.get("success", 0) + 1
    assert after.get("invalid_credentials", 0) >= before.get("invalid_credentials", 0) + 1


def test_metrics_hold_no_secrets(api, account):
    username, password, _ = account
    api.post("/v1/sessions", json={"username": username, "password": password})
    text = api.get("/metrics").text
    assert password not in text
    assert username not in text


def test_jwks(api):
    response = api.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=60"
    keys = response.json()["keys"]
    assert len({key["kid"] for key in keys}) == len(keys)
    for key in keys:
        assert "d" not in key


def test_responses_not_cached_by_default(api, account):
    username, password, _ = account
    response = api.post("/v1/sessions", json={"username": username, "password": password})
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_readyz_without_core(start_stack):
    stack = start_stack("no-core")
    with stack.client() as client:
        username, password = new_username(), new_password()
        assert client.post("/v1/users", json={"username": username, "password": password}).status_code == 201
        token = client.post("/v1/sessions", json={"username": username, "password": password}).json()["access_token"]

        core = stack.processes["core"]
        stack.core_stopped_on_purpose = True
        core.send_signal(signal.SIGTERM)
        core.wait(timeout=15)

        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "not ready", "checks": {"database": True, "core": False}}
        assert client.get("/healthz").status_code == 200

        me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert_problem(me, 503, "unavailable")
        assert int(me.headers["Retry-After"]) >= 1
        assert_problem(client.post("/v1/sessions", json={"username": username, "password": password}),
                       503, "unavailable")
        assert_problem(client.get("/.well-known/jwks.json"), 503, "unavailable")


def test_core_default_listen(work_dir, bin_dir):
    """licensing-core with only --data-dir and --database listens on DATA_DIR/core.sock."""
    data_dir = work_dir / "core-defaults"
    database = f"sqlite://{(work_dir / 'core-defaults.db').resolve()}"
    with open(work_dir / "core-defaults.log", "wb") as log:
        core = subprocess.Popen([str(bin_dir / "licensing-core"), "--data-dir", str(data_dir), "--database", database],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and core.poll() is None and not (data_dir / "core.sock").exists():
            time.sleep(0.05)
        output = (work_dir / "core-defaults.log").read_text(errors="replace")
        assert core.poll() is None, f"licensing-core exited with {core.returncode}: {output}"
        assert (data_dir / "core.sock").exists()
    finally:
        if core.poll() is None:
            core.send_signal(signal.SIGTERM)
            core.wait(timeout=15)
    assert core.returncode == 0
