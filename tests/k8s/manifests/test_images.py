"""Static rules of the Dockerfiles, their runtime packages against the built programs'
shared libraries, and the digest pinning of deploy/build-images."""

import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import COMMAND_TIMEOUT_SECONDS, DEPLOY, REPOSITORY, render

DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
PROGRAMS = ["licensing-gateway", "licensing-core", "enclave", "licensectl"]
COMPILERS = re.compile(r"^(gcc|g\+\+|cpp|clang.*|build-essential|cmake|make|ninja-build|.*-dev)$")
# Both paths, in case the base image does not merge /bin into /usr/bin.
SHELLS = ["/usr/bin/sh", "/usr/bin/bash", "/usr/bin/dash", "/bin/sh", "/bin/bash", "/bin/dash"]
DIGEST = "sha256:" + "ab" * 32


def instructions(path: pathlib.Path) -> list[tuple[str, str]]:
    """Return the (INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(path: pathlib.Path) -> list[list[tuple[str, str]]]:
    """Return the instructions of each build stage, from its FROM on."""
    result = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def installed_packages(stage) -> set[str]:
    packages = set()
    for keyword, rest in stage:
        if keyword == "RUN" and "apt-get install" in rest:
            command = rest.split("apt-get install", 1)[1].split("&&", 1)[0]
            packages |= {word for word in command.split() if not word.startswith("-")}
    return packages


def install_deps_packages() -> set[str]:
    text = (REPOSITORY / "scripts" / "install-deps").read_text()
    block = text.split("packages=(", 1)[1].split("\n)", 1)[0]
    return {word for line in block.splitlines() for word in line.split("#", 1)[0].split()}


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.stem for p in DOCKERFILES])
def test_dockerfile_rules(path):
    every = instructions(path)
    all_stages = stages(path)
    final = all_stages[-1]
    base_arguments = [rest for keyword, rest in every[:every.index(next(i for i in every if i[0] == "FROM"))]
                      if keyword == "ARG"]

    assert len(all_stages) >= 2, "not multi-stage"
    assert base_arguments == ["BASE_IMAGE"], "BASE_IMAGE must be declared, without a default, before the first FROM"
    assert all(stage[0][1].startswith("${BASE_IMAGE} AS ") for stage in all_stages)
    assert any(keyword == "RUN" and "*@sha256:" + "?" * 64 + ")" in rest for keyword, rest in all_stages[0]), \
        "the build stage does not reject a BASE_IMAGE without a digest"
    assert [rest for keyword, rest in final if keyword == "USER"] == ["10001:10001"]
    assert not {p for p in installed_packages(final) if COMPILERS.match(p)}, "a compiler or -dev package in the final stage"
    assert all(f"--from=build " in rest for keyword, rest in final if keyword == "COPY")
    removal = " ".join(rest for keyword, rest in final if keyword == "RUN")
    for shell in SHELLS:
        assert f" {shell}" in removal, f"{shell} is not removed from the final stage"
    assert "/usr/bin/apt " in removal
    assert "/usr/bin/dpkg " in removal
    assert final[-1][0] == "ENTRYPOINT"
    assert final[-1][1] == f'["/usr/local/bin/{path.stem}"]'
    assert not [keyword for keyword, _ in final[final.index(next(i for i in final if i[0] == "USER")):]
                if keyword == "RUN"], "RUN after the shell was removed"


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.stem for p in DOCKERFILES])
def test_build_stage_matches_install_deps(path):
    build_packages = installed_packages(stages(path)[0])
    declared = install_deps_packages()
    required_dev = {p for p in declared if p.endswith("-dev")} - {"libgtest-dev", "libgmock-dev", "libbenchmark-dev"}

    assert build_packages <= declared, f"not in scripts/install-deps: {sorted(build_packages - declared)}"
    assert required_dev <= build_packages, f"missing from the build stage: {sorted(required_dev - build_packages)}"


def test_one_dockerfile_per_program():
    assert sorted(p.stem for p in DOCKERFILES) == sorted(PROGRAMS)


def package_closure(packages: set[str]) -> set[str]:
    """Return the packages and everything they depend on, from this machine's dpkg database.

    The programs were built here, so every package they link against is installed here.
    """
    status = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Pre-Depends}, ${Depends}\n"],
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=True).stdout
    dependencies = {}
    for line in status.splitlines():
        name, _, depends = line.partition(" ")
        # Every alternative of "a | b" counts, and version constraints and architectures are dropped.
        dependencies[name] = {re.split(r"[\s:(]", alternative.strip(), maxsplit=1)[0]
                              for alternative in re.split(r"[,|]", depends) if alternative.strip()}
    closure, pending = set(), list(packages)
    while pending:
        package = pending.pop()
        if package not in closure:
            closure.add(package)
            pending.extend(dependencies.get(package, ()))
    return closure


def owning_packages(libraries: list[str]) -> set[str]:
    """Return the Debian packages that installed the shared libraries, in one dpkg call."""
    candidates = {}
    for library in libraries:
        real = os.path.realpath(library)
        # dpkg records some libraries under /lib although Debian 12 merged it into /usr/lib.
        for path in (library, real, re.sub(r"^/usr/lib/", "/lib/", real)):
            candidates.setdefault(path, library)
    # dpkg -S exits 1 when any one path is unknown, so the output is read, not the status.
    output = subprocess.run(["dpkg", "-S", *candidates], capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT_SECONDS).stdout
    packages, found = set(), set()
    for line in output.splitlines():
        package, _, path = line.partition(": ")
        if path in candidates:
            packages.add(package.split(":", 1)[0])
            found.add(candidates[path])
    assert found == set(libraries), f"no Debian package owns {sorted(set(libraries) - found)}"
    return packages


@pytest.mark.parametrize("program", PROGRAMS)
def test_runtime_stage_has_program_libraries(program):
    build_directory = pathlib.Path(os.environ.get("LICENSING_BUILD_DIR", REPOSITORY / "build" / "ci"))
    binary = build_directory / "bin" / program
    if not binary.is_file():
        pytest.fail(f"{binary} is not built; build it or set LICENSING_BUILD_DIR")
    libraries = re.findall(r"=> (/\S+)", subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                                                        timeout=COMMAND_TIMEOUT_SECONDS, check=True).stdout)
    needed = owning_packages(libraries)
    runtime = installed_packages(stages(DEPLOY / "docker" / f"{program}.Dockerfile")[-1])
    # Packages in every Debian 12 base image: the C library, and the C++ runtime and libraries that apt needs.
    base = {"libc6", "libgcc-s1", "libstdc++6", "libcrypt1", "zlib1g", "libzstd1", "libsystemd0"}

    assert needed - base - package_closure(runtime) == set()


def pin(kustomization: pathlib.Path, *images: str) -> subprocess.CompletedProcess:
    arguments = [argument for image in images for argument in ("--image", image)]
    return subprocess.run(["/usr/bin/python3", str(DEPLOY / "build-images"), "pin", "--kustomization",
                           str(kustomization), *arguments], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_SECONDS)


def test_pinned_render_uses_digests_only(tmp_path):
    shutil.copytree(DEPLOY / "k8s", tmp_path / "k8s")
    kustomization = tmp_path / "k8s" / "kustomization.yaml"

    result = pin(kustomization, f"licensing-gateway=registry.test:5000/licensing/licensing-gateway@{DIGEST}",
                 f"licensing-core=registry.test:5000/licensing/licensing-core@{DIGEST}",
                 f"enclave=registry.test:5000/licensing/enclave@{DIGEST}",
                 f"postgres=docker.io/library/postgres@{DIGEST}")
    objects = [o for o in yaml.safe_load_all(render(tmp_path / "k8s")) if o]
    images = [c["image"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")
              for c in o["spec"]["template"]["spec"]["containers"]]
    config = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "licensing-images"][0]

    assert result.returncode == 0, result.stderr
    assert kustomization.read_text().startswith("# Production:")
    assert sorted(images) == sorted([f"registry.test:5000/licensing/licensing-core@{DIGEST}",
                                     f"registry.test:5000/licensing/licensing-gateway@{DIGEST}",
                                     f"docker.io/library/postgres@{DIGEST}"])
    assert config["data"]["enclave-image"] == f"registry.test:5000/licensing/enclave@{DIGEST}"


def test_pin_rejects_tag_only_reference(tmp_path):
    shutil.copytree(DEPLOY / "k8s", tmp_path / "k8s")
    kustomization = tmp_path / "k8s" / "kustomization.yaml"
    before = kustomization.read_text()

    result = pin(kustomization, "licensing-core=registry.test/licensing-core:0.1.0")

    assert result.returncode == 1
    assert "must be NAME@sha256:<64 hex digits>" in result.stderr
    assert kustomization.read_text() == before


def test_build_requires_pinned_base_image():
    environment = {k: v for k, v in os.environ.items() if k != "BASE_IMAGE"}
    environment["BASE_IMAGE"] = "docker.io/library/debian:bookworm-slim"

    result = subprocess.run(["/usr/bin/python3", str(DEPLOY / "build-images"), "build"], capture_output=True, text=True,
                            env=environment, timeout=COMMAND_TIMEOUT_SECONDS)

    assert result.returncode == 1
    assert "the base image must be NAME@sha256:" in result.stderr
