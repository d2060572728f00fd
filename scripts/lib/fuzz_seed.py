"""Creates one object of each kind in a fresh envplane and prints, as Schemathesis
configuration, dictionaries of their ids bound to the path ids of their routes. The
fuzzer then draws most of its ids from these, so that its requests reach the objects'
logic instead of stopping at 404; the rest stay generated (404 checked too).

Usage: python fuzz_seed.py URL ADMIN_KEY_FILE > seeded.toml (scripts/fuzz-api runs it).
The template names a repository that is never cloned: the server fuzzed has no runner.
"""

import json
import sys
import urllib.request

# How often a path id comes from the dictionary rather than from the generator.
PROBABILITY = 0.8


def call(url, key, method, path, body=None):
    request = urllib.request.Request(
        url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def main(url, key_file):
    with open(key_file) as file:
        key = file.read().strip()
    project = call(url, key, "POST", "/v1/projects", {"name": "fuzz"})
    template = call(url, key, "POST", "/v1/templates", {
        "name": "fuzz",
        "project_id": project["id"],
        "repository": "https://git.invalid/fuzz.git",
        "iac_version": "1.0.3",
    })
    environment = call(url, key, "POST", "/v1/environments", {
        "name": "fuzz",
        "project_id": project["id"],
        "template_id": template["id"],
    })
    deployment = call(url, key, "POST", f"/v1/environments/{environment['id']}/deployments",
                      {"action": "plan"})
    api_key = call(url, key, "POST", "/v1/api-keys", {"name": "fuzz", "role": "viewer"})
    routes = {
        "projects": (r"^/v1/projects/\{id\}", project["id"]),
        "templates": (r"^/v1/templates/\{id\}", template["id"]),
        "environments": (r"^/v1/environments/\{id\}", environment["id"]),
        "deployments": (r"^/v1/deployments/\{id\}", deployment["id"]),
        "api_keys": (r"^/v1/api-keys/\{id\}", api_key["id"]),
    }
    for name, (path, object_id) in routes.items():
        print(f"\n[dictionaries.{name}]\nvalues = [{json.dumps(object_id)}]")
    for name, (path, _) in routes.items():
        print(f"\n[[operations]]\ninclude-path-regex = {json.dumps(path)}")
        print(f'parameters = {{ "path.id" = {{ dictionary = "{name}", probability = {PROBABILITY} }} }}')


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
