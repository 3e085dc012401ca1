"""Fixtures: one licensing stack per test run, on the database that LICENSING_TEST_DB names."""

import pathlib
import shutil
import tempfile

import pytest

from support import RESPONSES, RUNNING_STACKS, Stack, backend_kind, find_binary_dir, new_password, new_username


def pytest_configure(config):
    config.addinivalue_line("markers", "final: runs after every other test (checks what the others left)")
    config.addinivalue_line("markers", "sqlite_only: runs only when LICENSING_TEST_DB is sqlite")


def pytest_collection_modifyitems(session, config, items):
    if backend_kind() != "sqlite":
        deselected = [item for item in items if item.get_closest_marker("sqlite_only")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if item not in deselected]
    items.sort(key=lambda item: item.get_closest_marker("final") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for stack in list(RUNNING_STACKS):
            report.sections.append((f"server logs ({stack.name})", stack.logs(30)))


@pytest.fixture(autouse=True)
def restart_crashed_servers(request):
    """Restart servers that crashed during a test, and record the crash against that test."""
    yield
    for stack in list(RUNNING_STACKS):
        for crash in stack.restart_crashed():
            RESPONSES.crashes.append((request.node.nodeid, crash))


@pytest.fixture(scope="session")
def bin_dir():
    return find_binary_dir()


@pytest.fixture(scope="session")
def work_dir(request):
    directory = pathlib.Path(tempfile.mkdtemp(prefix="licensing-e2e-"))
    yield directory
    if request.session.testsfailed == 0:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"\nserver data and logs kept in {directory}")


@pytest.fixture(scope="session")
def start_stack(work_dir, bin_dir):
    """Start a stack with extra gateway flags; every stack started here is stopped at the end."""
    started = []

    def start(name, gateway_args=(), core_args=()):
        stack = Stack(work_dir, bin_dir, name, gateway_args, core_args)
        started.append(stack)
        return stack.start()

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture(scope="session")
def stack(start_stack):
    """The shared gateway: per-account limit 5, per-address limit high enough never to apply.

    Its first account, created before any test runs, is ``stack.first_account``
    (username, password, id); the last test checks that it still works.
    """
    stack = start_stack("main", ["--header-timeout", "2", "--user-failure-limit", "5",
                                 "--address-failure-limit", "100000", "--body-limit", "32768"])
    username, password = new_username("first"), new_password()
    with stack.client() as client:
        response = client.post("/v1/users", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    stack.first_account = (username, password, response.json()["id"])
    return stack


@pytest.fixture(scope="session")
def limited_stack(start_stack):
    """A gateway with a per-address limit of 5 failed logins and its default body limit."""
    return start_stack("limited", ["--address-failure-limit", "5", "--user-failure-limit", "1000"])


@pytest.fixture
def api(stack):
    with stack.client() as client:
        yield client


@pytest.fixture
def account(api):
    """A new account: (username, password, user id)."""
    username, password = new_username(), new_password()
    response = api.post("/v1/users", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    return username, password, response.json()["id"]


@pytest.fixture
def tokens(api, account):
    """A session of a new account: (account tuple, token response body)."""
    username, password, _ = account
    response = api.post("/v1/sessions", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return account, response.json()
