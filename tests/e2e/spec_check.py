"""Check HTTP responses against api/openapi.yaml.

Every response that the end-to-end tests receive goes through ``OpenApiSpec.check``. Its
status must be documented for the request's path and method, and its media type must be
one that the spec lists for that status. Required headers must be present and match their
schema. A JSON body must validate against the schema (JSON Schema 2020-12, with ``$ref``
resolved into the spec's components).
"""

import json
import pathlib
import re

import jsonschema
import yaml

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Statuses that the HTTP server sends for a request that no operation handles, with the
# component response that describes each.
UNROUTED_RESPONSES = {
    "400": "#/components/responses/BadRequest",
    "413": "#/components/responses/BodyTooLarge",
    "431": "#/components/responses/HeaderTooLarge",
}


class DuplicateMemberError(ValueError):
    pass


def reject_duplicate_members(pairs):
    names = [name for name, _ in pairs]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise DuplicateMemberError(f"duplicate JSON members {sorted(duplicates)}")
    return dict(pairs)


def parse_json_strictly(body):
    return json.loads(body.decode("utf-8"), object_pairs_hook=reject_duplicate_members)


def media_type_of(content_type):
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


class OpenApiSpec:
    def __init__(self, path):
        self.path = pathlib.Path(path)
        with open(self.path, encoding="utf-8") as file:
            self.document = yaml.safe_load(file)
        self.resolver = jsonschema.RefResolver(base_uri="", referrer=self.document)
        self._templates = [(template, self._template_regex(template)) for template in self.document["paths"]]

    @staticmethod
    def _template_regex(template):
        parts = re.split(r"(\{[^/{}]+\})", template)
        pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
        return re.compile(f"^{pattern}$")

    def resolve(self, node):
        """Follow ``$ref`` chains (outside schemas) to the object they name."""
        while isinstance(node, dict) and "$ref" in node:
            _, node = self.resolver.resolve(node["$ref"])
        return node

    def operations(self):
        """Yield (path template, method, operation) for every documented operation."""
        for template, item in self.document["paths"].items():
            for method in HTTP_METHODS:
                if method in item:
                    yield template, method, item[method]

    def find_path(self, path):
        for template, regex in self._templates:
            if regex.match(path):
                return template
        return None

    def methods_of(self, template):
        return {method.upper() for method in HTTP_METHODS if method in self.document["paths"][template]}

    def schema_errors(self, schema, instance):
        validator = jsonschema.Draft202012Validator(schema, resolver=self.resolver)
        return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
                for error in validator.iter_errors(instance)]

    def expected_response(self, method, path, status):
        """Return (description of the expectation, response object) or raise AssertionError."""
        template = self.find_path(path)
        status_key = str(status)
        if template is None:
            if status_key == "404":
                return "unknown path", self.resolve({"$ref": "#/components/responses/NotFound"})
            if status_key in UNROUTED_RESPONSES:
                return "unknown path", self.resolve({"$ref": UNROUTED_RESPONSES[status_key]})
            raise AssertionError(f"{method} {path}: status {status} for a path that the spec does not name "
                                 f"(expected 404)")

        item = self.document["paths"][template]
        operation = item.get(method.lower())
        if operation is None:
            if status_key == "405":
                return "undocumented method", self.resolve({"$ref": "#/components/responses/MethodNotAllowed"})
            if status_key in UNROUTED_RESPONSES:
                return "undocumented method", self.resolve({"$ref": UNROUTED_RESPONSES[status_key]})
            raise AssertionError(f"{method} {template}: status {status} for an undocumented method "
                                 f"(expected 405)")

        responses = operation["responses"]
        if status_key not in responses:
            raise AssertionError(f"{method} {template}: status {status} is not documented; "
                                 f"documented: {sorted(responses)}")
        return f"{method} {template} {status}", self.resolve(responses[status_key])

    def check(self, method, path, status, headers, body):
        """Raise AssertionError listing every way the response departs from the spec.

        ``headers`` maps lower-case names to values; ``body`` is bytes.
        """
        method = method.upper()
        where, response = self.expected_response(method, path, status)
        failures = []

        for name, header in (response.get("headers") or {}).items():
            header = self.resolve(header)
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    failures.append(f"header {name} is missing")
                continue
            failures += [f"header {name}: {error}" for error in self.schema_errors(header.get("schema", {}), value)]

        if status == 405:
            allowed = {part.strip().upper() for part in headers.get("allow", "").split(",") if part.strip()}
            documented = self.methods_of(self.find_path(path))
            if allowed != documented:
                failures.append(f"Allow lists {sorted(allowed)}, the spec documents {sorted(documented)}")

        content = response.get("content")
        media_type = media_type_of(headers.get("content-type"))
        if not content:
            if body:
                failures.append(f"a body of {len(body)} bytes where the spec documents none")
        elif media_type not in content:
            failures.append(f"content type {headers.get('content-type')!r} is not one of {sorted(content)}")
        else:
            schema = content[media_type].get("schema", {})
            if media_type.endswith("json"):
                try:
                    instance = parse_json_strictly(body)
                except (UnicodeDecodeError, ValueError) as error:
                    failures.append(f"the body is not valid JSON: {error}")
                else:
                    failures += self.schema_errors(schema, instance)
                    if isinstance(instance, dict) and media_type == "application/problem+json":
                        if instance.get("status") != status:
                            failures.append(f"problem status {instance.get('status')!r} differs from HTTP status {status}")
            else:
                try:
                    failures += self.schema_errors(schema, body.decode("utf-8"))
                except UnicodeDecodeError as error:
                    failures.append(f"the body is not UTF-8 text: {error}")

        if failures:
            excerpt = body[:300].decode("utf-8", "replace")
            raise AssertionError(f"{where} does not match {self.path.name}:\n  " + "\n  ".join(failures) +
                                 f"\n  body: {excerpt}")
