#!/usr/bin/python3
"""Compares the Role licensing-core runs under with the requests it sent to the simulator.

Fails when the Role grants a (verb, apiGroup, resource) that no request used, or a request
used one that the Role does not grant in its namespace.

Usage: role_check.py ROLE_YAML REQUEST_LOG_DIRECTORY
"""

import sys

import yaml

from request_log import rbac_attributes, read_requests

# The minimum number of requests a full run of provisioner_test logs. Fewer means it did not run.
MIN_REQUESTS = 50


def granted(role):
    namespace = role["metadata"]["namespace"]
    result = set()
    for rule in role.get("rules", []):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    result.add((verb, group, resource, namespace))
    return result


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as role_file:
        role = yaml.safe_load(role_file)
    requests = read_requests(sys.argv[2])
    if len(requests) < MIN_REQUESTS:
        print(f"only {len(requests)} requests in {sys.argv[2]}: run provisioner_test first", file=sys.stderr)
        return 1

    used = {attributes for attributes in map(rbac_attributes, requests) if attributes is not None}
    grants = granted(role)
    unused = sorted(grants - used)
    missing = sorted(used - grants)
    for verb, group, resource, namespace in unused:
        print(f"granted but never used: {verb} {group or 'core'}/{resource} in {namespace}")
    for verb, group, resource, namespace in missing:
        print(f"used but not granted: {verb} {group or 'core'}/{resource} in {namespace}")
    if unused or missing:
        return 1
    print(f"the Role matches the {len(used)} permissions used by {len(requests)} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
