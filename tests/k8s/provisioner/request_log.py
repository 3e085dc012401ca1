"""Reads the simulator's request logs: what the provisioner and issuer sent."""

import glob
import json
import os
import urllib.parse


def read_requests(directory):
    """Returns every logged request of every *.jsonl file in `directory`."""
    requests = []
    for path in sorted(glob.glob(os.path.join(directory, "*.jsonl"))):
        with open(path, encoding="utf-8") as log:
            requests.extend(json.loads(line) for line in log if line.strip())
    return requests


def rbac_attributes(request):
    """Returns (verb, apiGroup, resource, namespace) as the API server authorizes the
    request, or None for a path outside the namespaced API."""
    parts = [urllib.parse.unquote(part) for part in request["path"].split("/") if part]
    if len(parts) >= 5 and parts[0] == "api" and parts[2] == "namespaces":
        group, rest = "", parts[3:]
    elif len(parts) >= 6 and parts[0] == "apis" and parts[3] == "namespaces":
        group, rest = parts[1], parts[4:]
    else:
        return None
    namespace, resource = rest[0], rest[1]
    has_name = len(rest) >= 3
    method = request["method"]
    query = request.get("query") or {}
    if method == "GET" and has_name:
        verb = "get"
    elif method == "GET" and query.get("watch") in ("true", "1"):
        verb = "watch"
    elif method == "GET":
        verb = "list"
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if has_name else "deletecollection"
    else:
        verb = method.lower()
    return verb, group, resource, namespace
