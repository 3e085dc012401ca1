"""Shared fixtures: the repository paths, kubectl, node, and the rendered manifests."""

import pathlib
import shutil
import subprocess

import pytest
import yaml

REPOSITORY = pathlib.Path(__file__).resolve().parents[3]
DEPLOY = REPOSITORY / "deploy"
K8S = DEPLOY / "k8s"
SCHEMA_DIRECTORY = REPOSITORY / "tests" / "k8s" / "schema"
VALIDATE = SCHEMA_DIRECTORY / "validate.mjs"
COMMAND_TIMEOUT_SECONDS = 60


def required_tool(name: str) -> str:
    """Return the path of a program the tests need, failing the test when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH; run scripts/install-deps")
    return path


def render(kustomization: pathlib.Path) -> str:
    """Return `kubectl kustomize` output for one kustomization directory."""
    result = subprocess.run([required_tool("kubectl"), "kustomize", str(kustomization)],
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    assert result.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{result.stderr}"
    return result.stdout


def run_validator(*files: pathlib.Path) -> subprocess.CompletedProcess:
    """Run validate.mjs on files and return the finished process with its output."""
    return subprocess.run([required_tool("node"), str(VALIDATE), *map(str, files)],
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)


@pytest.fixture(scope="session")
def production_text() -> str:
    return render(K8S)


@pytest.fixture(scope="session")
def development_text() -> str:
    return render(K8S / "overlays" / "development")


@pytest.fixture(scope="session")
def production(production_text) -> list:
    return [document for document in yaml.safe_load_all(production_text) if document]


@pytest.fixture(scope="session")
def development(development_text) -> list:
    return [document for document in yaml.safe_load_all(development_text) if document]


def find(objects: list, kind: str, name: str, namespace: str | None = None) -> dict:
    """Return the one object of that kind, name and namespace, failing when it is absent."""
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
               and o["metadata"].get("namespace") == namespace]
    assert len(matches) == 1, f"expected one {kind} {namespace}/{name}, found {len(matches)}"
    return matches[0]
