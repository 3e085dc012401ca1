"""Render both trees with the kubectl of Debian 12 (kubernetes-client 1.20), whose embedded
kustomize predates `resources` directories and `patches`, and compare with the current
kubectl's output."""

import os
import pathlib
import subprocess

import pytest
import yaml

from conftest import COMMAND_TIMEOUT_SECONDS, K8S, render

PACKAGE = "kubernetes-client"


def old_kubectl() -> pathlib.Path:
    """Return Debian 12's kubectl, unpacked once into the build tree from the apt package."""
    directory = pathlib.Path(os.environ.get("LICENSING_BUILD_DIR", "/tmp")) / "k8s-debian-kubectl"
    kubectl = directory / "root" / "usr" / "bin" / "kubectl"
    if kubectl.is_file():
        return kubectl

    directory.mkdir(parents=True, exist_ok=True)
    # apt-get download fetches the .deb without installing it, so the kubectl on PATH stays.
    download = subprocess.run(["apt-get", "download", PACKAGE], cwd=directory, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_SECONDS)
    archives = sorted(directory.glob(f"{PACKAGE}_*.deb"))
    if download.returncode != 0 or not archives:
        pytest.fail(f"apt-get download {PACKAGE} failed (run apt-get update first): {download.stderr.strip()}")
    subprocess.run(["dpkg-deb", "-x", str(archives[-1]), str(directory / "root")], check=True,
                   timeout=COMMAND_TIMEOUT_SECONDS)
    return kubectl


def objects_by_identity(text: str) -> dict:
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
            for o in yaml.safe_load_all(text) if o}


@pytest.mark.parametrize("tree", [K8S, K8S / "overlays" / "development"], ids=["production", "development"])
def test_debian_kubectl_renders_same_objects(tree):
    kubectl = old_kubectl()
    version = subprocess.run([str(kubectl), "version", "--client", "--short"], capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT_SECONDS).stdout
    result = subprocess.run([str(kubectl), "kustomize", str(tree)], capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT_SECONDS)

    assert "v1.20." in version
    assert result.returncode == 0, result.stderr
    assert objects_by_identity(result.stdout) == objects_by_identity(render(tree))
