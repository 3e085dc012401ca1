"""Validate the rendered manifests with validate.mjs, and check that it rejects bad objects."""

import pathlib

from conftest import run_validator

BROKEN = pathlib.Path(__file__).resolve().parent / "broken"


def test_rendered_production_validates(production_text, tmp_path):
    rendered = tmp_path / "production.yaml"
    rendered.write_text(production_text)

    result = run_validator(rendered)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    valid = [line for line in result.stdout.splitlines() if line.startswith("ok   ")]
    assert len(valid) >= 20, result.stdout


def test_rendered_development_validates(development_text, tmp_path):
    rendered = tmp_path / "development.yaml"
    rendered.write_text(development_text)

    result = run_validator(rendered)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout


def test_broken_objects_rejected():
    result = run_validator(BROKEN / "objects.yaml", BROKEN / "objects.json")
    lines = result.stdout.splitlines()

    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL objects.yaml#1 apps/v1 Deployment licensing/replicas-as-text: /spec/replicas must be integer" in lines
    assert any(line.startswith("FAIL objects.yaml#2 cert-manager.io/v1 Certificate licensing/no-issuer:")
               and "issuerRef" in line for line in lines), result.stdout
    assert any(line.startswith("FAIL objects.yaml#3 example.com/v1 Widget licensing/unknown-kind: unknown apiVersion/kind")
               for line in lines), result.stdout
    assert "ok   objects.json#1 v1 ConfigMap licensing/valid" in lines
    service_line = [line for line in lines if line.startswith("FAIL objects.json#2 v1 Service licensing/port-as-text:")]
    assert len(service_line) == 1, result.stdout
    assert "/spec/ports/0/port" in service_line[0]
    assert lines[-1] == "1 passed, 4 failed"


def test_json_lines_validated_per_line(tmp_path):
    lines = tmp_path / "objects.jsonl"
    lines.write_text('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "first"}}\n\n'
                     '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "second"}, "spec": {"containers": [{}]}}\n')

    result = run_validator(lines)
    output = result.stdout.splitlines()

    assert result.returncode == 1, result.stdout + result.stderr
    assert "ok   objects.jsonl#1 v1 ConfigMap first" in output
    assert output[1].startswith("FAIL objects.jsonl#2 v1 Pod second: /spec/containers/0 must have required property")
    assert output[-1] == "1 passed, 1 failed"


def test_empty_and_unparsable_files_rejected(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n")
    unparsable = tmp_path / "unparsable.json"
    unparsable.write_text("{")

    result = run_validator(empty, unparsable)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL {empty}: no object in the file" in result.stdout
    assert f"FAIL {unparsable}: cannot read or parse:" in result.stdout


def test_no_file_is_usage_error():
    result = run_validator()

    assert result.returncode == 2
    assert "usage:" in result.stderr
