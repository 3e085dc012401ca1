"""licensectl against the stack that `licensectl dev up` starts (always SQLite)."""

import json
import os
import pathlib
import stat
import subprocess
import time

import pytest

from support import ApiClient, new_password, new_username


def run_licensectl(bin_dir, *arguments, password=None, timeout=90):
    environment = {**os.environ, "LICENSING_BIN_DIR": str(bin_dir)}
    environment.pop("LICENSECTL_PASSWORD", None)
    return subprocess.run([str(bin_dir / "licensectl"), *arguments], input=password, capture_output=True, text=True,
                          env=environment, timeout=timeout)


def program_of(pid):
    try:
        return pathlib.Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return None


def wait_for_exit(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(program_of(pid) is None for pid in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.sqlite_only
def test_licensectl_dev_stack(work_dir, bin_dir):
    directory = work_dir / "dev-stack"
    session_file = work_dir / "dev-session" / "session.json"
    up = run_licensectl(bin_dir, "dev", "up", "--dir", str(directory))
    assert up.returncode == 0, up.stdout + up.stderr
    stack_file = directory / "stack.json"
    pids = {}
    try:
        stack = json.loads(stack_file.read_text())
        pids = stack["pids"]
        assert set(stack) == {"gateway_url", "ca_bundle", "data_dir", "pids"}
        assert stack["gateway_url"].startswith("https://127.0.0.1:")
        assert pathlib.Path(stack["ca_bundle"]).is_file()
        assert pathlib.Path(stack["data_dir"]) == directory.resolve()
        assert set(pids) == {"core", "gateway"}
        assert program_of(pids["core"]) == "licensing-core"
        assert program_of(pids["gateway"]) == "licensing-gateway"

        with ApiClient(stack["gateway_url"], stack["ca_bundle"]) as client:
            assert client.get("/readyz").status_code == 200

        username, password = new_username("cli"), new_password()
        stack_option = ["--stack", str(stack_file), "--session", str(session_file)]
        signup = run_licensectl(bin_dir, *stack_option, "signup", "--username", username, "--password-stdin",
                                password=password + "\n")
        assert signup.returncode == 0, signup.stderr
        assert username in signup.stdout

        duplicate = run_licensectl(bin_dir, *stack_option, "signup", "--username", username, "--password-stdin",
                                   password=password + "\n")
        assert duplicate.returncode == 1
        assert "HTTP 409" in duplicate.stderr

        wrong = run_licensectl(bin_dir, *stack_option, "login", "--username", username, "--password-stdin",
                               password="not-the-password\n")
        assert wrong.returncode == 1
        assert "HTTP 401" in wrong.stderr
        assert not session_file.exists()

        login = run_licensectl(bin_dir, *stack_option, "login", "--username", username, "--password-stdin",
                               password=password + "\n")
        assert login.returncode == 0, login.stderr
        assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
        saved = json.loads(session_file.read_text())
        assert saved["username"] == username
        assert saved["access_token"].count(".") == 2
        assert password not in session_file.read_text()

        whoami = run_licensectl(bin_dir, *stack_option, "whoami")
        assert whoami.returncode == 0, whoami.stderr
        assert username in whoami.stdout

        logout = run_licensectl(bin_dir, *stack_option, "logout")
        assert logout.returncode == 0, logout.stderr
        assert not session_file.exists()
        after = run_licensectl(bin_dir, *stack_option, "whoami")
        assert after.returncode == 1
    finally:
        down = run_licensectl(bin_dir, "dev", "down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    assert wait_for_exit(pids.values(), 15), f"processes still running after dev down: {pids}"
    assert not stack_file.exists()
