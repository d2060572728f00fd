#!/usr/bin/env python3
"""Seed an envplane server for bench/api-load.sh: 1 project, 1 template, N environments.

Usage: seed.py BASE_URL API_KEY COUNT OUT_DIR

Creates everything through the public API (POST /v1/projects, /v1/templates,
/v1/environments) with a few threads, each on its own keep-alive connection. Writes
OUT_DIR/project_id and OUT_DIR/environment_ids (one id a line) and prints a one-line
summary. Exits non-zero on the first failed request.
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

THREADS = 8


class Client:
    """One keep-alive HTTP/1.1 connection with the bearer key."""

    def __init__(self, base_url, key):
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port = url.hostname, url.port
        self.headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
        }
        self.connection = None

    def post(self, path, body):
        payload = json.dumps(body)
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.connection.request("POST", path, body=payload, headers=self.headers)
                response = self.connection.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                # The server may close an idle keep-alive connection: reconnect once.
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
                continue
            if response.status != 201:
                raise RuntimeError(
                    f"POST {path} {body!r} answered {response.status}: {data[:300]!r}"
                )
            return json.loads(data)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    base_url, key, count, out_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    client = Client(base_url, key)
    project = client.post("/v1/projects", {"name": "bench"})
    template = client.post(
        "/v1/templates",
        {
            "name": "bench",
            "project_id": project["id"],
            "repository": "https://git.example.test/acme/bench.git",
            "iac_version": "1.0.3",
        },
    )

    ids = [None] * count
    errors = []
    started = time.monotonic()

    def work(worker):
        own = Client(base_url, key)
        try:
            for n in range(worker, count, THREADS):
                if errors:
                    return
                environment = own.post(
                    "/v1/environments",
                    {
                        "name": f"env-{n:05d}",
                        "project_id": project["id"],
                        "template_id": template["id"],
                    },
                )
                ids[n] = environment["id"]
        except Exception as error:  # reported once, below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        sys.exit(f"seeding failed: {errors[0]}")

    elapsed = time.monotonic() - started
    with open(os.path.join(out_dir, "project_id"), "w") as out:
        out.write(project["id"] + "\n")
    with open(os.path.join(out_dir, "environment_ids"), "w") as out:
        out.writelines(i + "\n" for i in ids)
    print(
        f"seeded 1 project, 1 template and {count} environments "
        f"in {elapsed:.1f} s ({count / elapsed:.0f}/s)"
    )


if __name__ == "__main__":
    main()
