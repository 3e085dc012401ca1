"""Security and wiring rules of the rendered production and development manifests."""

import re

import pytest
import yaml

from conftest import DEPLOY, REPOSITORY, find

ENCRYPTED_VALUE = re.compile(r"^ENC\[AES256_GCM,data:.+,iv:.+,tag:.+,type:\w+\]$")
TPM_RESOURCE = "githedgehog.com/tpmrm"


def workloads(objects):
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def container(deployment, name):
    matches = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(matches) == 1, f"no container {name}"
    return matches[0]


def flags(arguments):
    return {argument.split("=", 1)[0] for argument in arguments if argument.startswith("--")}


def declared_flags(*sources):
    text = "".join(path.read_text() for path in sources)
    return set(re.findall(r'"(--[a-z0-9-]+)"', text))


def secret_problems(document, origin):
    if not isinstance(document, dict) or document.get("kind") != "Secret":
        return []
    problems = []
    for section in ("data", "stringData"):
        for key, value in (document.get(section) or {}).items():
            if not ENCRYPTED_VALUE.match(str(value)):
                problems.append(f"{origin}: Secret {document['metadata'].get('name')} {section}.{key} is not sops-encrypted")
    return problems


@pytest.fixture(params=["production", "development"])
def rendered(request, production, development):
    return production if request.param == "production" else development


def test_no_plaintext_secret_rendered(rendered):
    problems = [p for document in rendered for p in secret_problems(document, "rendered")]

    assert problems == []


def test_no_plaintext_secret_under_deploy():
    problems = []
    for path in sorted(DEPLOY.rglob("*")):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        for document in yaml.safe_load_all(path.read_text()):
            problems += secret_problems(document, str(path.relative_to(REPOSITORY)))

    assert problems == []


def test_role_grants_exactly_the_provisioner_requests(production):
    role = find(production, "Role", "licensing-core", "licensing-enclaves")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    expected = {("", "pods", verb) for verb in ("create", "get", "list", "watch", "delete")}
    expected |= {("", "services", verb) for verb in ("create", "get", "delete")}
    expected |= {("", "configmaps", verb) for verb in ("create", "get", "update", "delete")}
    expected |= {("", "secrets", verb) for verb in ("create", "get", "delete")}
    expected |= {("networking.k8s.io", "ingresses", verb) for verb in ("create", "get", "delete")}
    expected |= {("cert-manager.io", "certificaterequests", verb) for verb in ("create", "get", "watch", "delete")}

    assert granted == expected
    assert all(len(rule["apiGroups"]) == 1 for rule in role["rules"])
    assert not [o for o in production if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_role_bound_to_core_service_account(production):
    binding = find(production, "RoleBinding", "licensing-core", "licensing-enclaves")

    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "licensing-core"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "licensing-core", "namespace": "licensing"}]


def test_pods_are_restricted(rendered):
    for workload in workloads(rendered):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for pod_container in pod["containers"]:
            context = pod_container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, pod_container["name"]
            assert context["allowPrivilegeEscalation"] is False, pod_container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], pod_container["name"]
            assert "add" not in context["capabilities"], pod_container["name"]
            assert {"cpu", "memory"} <= set(pod_container["resources"]["requests"]), pod_container["name"]
            assert {"cpu", "memory"} <= set(pod_container["resources"]["limits"]), pod_container["name"]


def test_licensing_pod_shares_core_socket(rendered):
    deployment = find(rendered, "Deployment", "licensing", "licensing")
    core = container(deployment, "licensing-core")
    gateway = container(deployment, "licensing-gateway")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}

    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["licensing-core", "licensing-gateway"]
    assert "emptyDir" in volumes["core-socket"]
    assert {"name": "core-socket", "mountPath": "/run/licensing"} in core["volumeMounts"]
    assert {"name": "core-socket", "mountPath": "/run/licensing"} in gateway["volumeMounts"]
    assert "--listen=unix:/run/licensing/core.sock" in core["args"]
    assert "--core=unix:/run/licensing/core.sock" in gateway["args"]


def test_api_token_mounted_into_core_only(rendered):
    deployment = find(rendered, "Deployment", "licensing", "licensing")
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    core_mounts = {m["mountPath"] for m in container(deployment, "licensing-core")["volumeMounts"]}
    gateway_mounts = {m["mountPath"] for m in container(deployment, "licensing-gateway")["volumeMounts"]}

    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "licensing-core"
    assert token_path in core_mounts
    assert token_path not in gateway_mounts


def test_gateway_probes_use_https(rendered):
    gateway = container(find(rendered, "Deployment", "licensing", "licensing"), "licensing-gateway")

    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert gateway["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]


def test_gateway_flags_exist():
    deployment = yaml.safe_load((DEPLOY / "k8s" / "base" / "licensing" / "deployment.yaml").read_text())
    gateway = container(deployment, "licensing-gateway")

    assert flags(gateway["args"]) <= declared_flags(REPOSITORY / "src" / "gateway" / "main.cpp")


def test_core_flags_exist(rendered):
    core = container(find(rendered, "Deployment", "licensing", "licensing"), "licensing-core")
    sources = [REPOSITORY / "src" / "core" / "main.cpp", *sorted((REPOSITORY / "src" / "core").glob("kubernetes/*.?pp"))]

    assert flags(core["args"]) <= declared_flags(*sources)


def test_production_uses_node_tpm(production):
    core = container(find(production, "Deployment", "licensing", "licensing"), "licensing-core")

    assert core["resources"]["limits"][TPM_RESOURCE] == "1"
    assert "--tpm-tcti=device:/dev/tpmrm0" in core["args"]


def test_development_runs_without_tpm(development, production):
    core = container(find(development, "Deployment", "licensing", "licensing"), "licensing-core")
    production_core = container(find(production, "Deployment", "licensing", "licensing"), "licensing-core")

    assert TPM_RESOURCE not in core["resources"]["limits"]
    assert not [argument for argument in core["args"] if argument.startswith("--tpm-tcti")]
    assert [a for a in production_core["args"] if not a.startswith("--tpm-tcti")] == core["args"]


def test_default_deny_in_both_namespaces(rendered):
    for namespace in ("licensing", "licensing-enclaves"):
        policy = find(rendered, "NetworkPolicy", "default-deny", namespace)
        assert policy["spec"]["podSelector"] == {}
        assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        assert "ingress" not in policy["spec"]
        assert "egress" not in policy["spec"]


def test_postgres_reachable_from_licensing_pod_only(rendered):
    policies = [o for o in rendered if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == "licensing"
                and o["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "licensing-postgres"
                and "Ingress" in o["spec"]["policyTypes"]]

    assert len(policies) == 1
    assert policies[0]["spec"]["ingress"] == [{
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "licensing"}}}],
        "ports": [{"protocol": "TCP", "port": 5432}]}]


def test_enclaves_reachable_from_ingress_and_core_only(rendered):
    policy = find(rendered, "NetworkPolicy", "enclave-ingress", "licensing-enclaves")
    sources = policy["spec"]["ingress"][0]["from"]

    assert len(policy["spec"]["ingress"]) == 1
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in sources
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "licensing"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "licensing"}}} in sources
    assert len(sources) == 2


def test_enclave_issuer_and_gateway_certificate(rendered):
    issuer = find(rendered, "Issuer", "licensing-ca", "licensing-enclaves")
    certificate = find(rendered, "Certificate", "licensing-gateway", "licensing")
    ingress = find(rendered, "Ingress", "licensing-gateway", "licensing")
    deployment = find(rendered, "Deployment", "licensing", "licensing")
    tls_volume = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "gateway-tls"][0]

    assert issuer["spec"]["ca"]["secretName"] == find(rendered, "Certificate", "licensing-ca", "licensing-enclaves")["spec"]["secretName"]
    assert find(rendered, "Certificate", "licensing-ca", "licensing-enclaves")["spec"]["isCA"] is True
    assert tls_volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    assert ingress["spec"]["tls"][0]["hosts"][0] in certificate["spec"]["dnsNames"]
    assert "licensing-gateway.licensing.svc" in certificate["spec"]["dnsNames"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-passthrough"] == "true"


def test_core_has_no_service(rendered):
    services = [o for o in rendered if o["kind"] == "Service" and o["metadata"]["namespace"] == "licensing"]
    exposed = {(s["metadata"]["name"], port["port"]) for s in services for port in s["spec"]["ports"]}

    assert exposed == {("licensing-gateway", 8443), ("licensing-postgres", 5432)}
