#!/usr/bin/python3
"""Writes every object the provisioner and issuer created or replaced (the bodies of
successful POST and PUT requests in the simulator's logs) to one JSON array file, for
schema validation.

Usage: export_objects.py REQUEST_LOG_DIRECTORY OUTPUT_FILE
"""

import json
import sys

from request_log import read_requests


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    objects = [request["body"] for request in read_requests(sys.argv[1])
               if request["method"] in ("POST", "PUT") and 200 <= request["status"] < 300
               and isinstance(request.get("body"), dict)]
    kinds = sorted({obj.get("kind", "?") for obj in objects})
    # Every kind the provisioner and issuer send must be there, or the run was partial.
    expected = ["CertificateRequest", "ConfigMap", "Ingress", "Pod", "Secret", "Service"]
    if kinds != expected:
        print(f"the logs hold kinds {kinds}, expected {expected}", file=sys.stderr)
        return 1
    with open(sys.argv[2], "w", encoding="utf-8") as output:
        json.dump(objects, output, indent=1)
    print(f"wrote {len(objects)} objects of kinds {', '.join(kinds)} to {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
