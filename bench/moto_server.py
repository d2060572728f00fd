"""moto server for long benchmark runs: `python3 bench/moto_server.py -H 127.0.0.1 -p PORT`.

Three defects of moto 5.2.5's DynamoDB make a run of a thousand deployments impossible
(docs/benchmarks.md, "Dispatch through the deployer on the AWS emulator"). They are
mended here, in the benchmark's emulator only; what envplane sends is unchanged.

- Every model instance is appended to a class-level list (`instances_tracked`, read only
  by moto's dashboard), and `TransactWriteItems` deep-copies the table as a rollback
  backup: each copy of each item stays alive for the life of the server (~9 MB per
  queued deployment). DynamoDB models are not tracked here.
- The backup is deep-copied once per item of the transaction, each copy replacing the
  previous one; here a table is copied once per transaction.
- Two overlapping transactions make the copy fail ("dictionary changed size during
  iteration") and moto answers 500; here transactions run one at a time.

With `ENVPLANE_BENCH_CALLS=FILE` every call is appended to FILE as "service action
index seconds items" (index: a query's index, "/count" for `Select: COUNT`; items: what a
query answered or a batch read asked for), to count what a run costs the emulator.
"""

import copy
import json
import os
import sys
import threading
import time

import moto.dynamodb.models as dynamodb_models
from moto.core.common_models import BaseModel
from moto.core.responses import BaseResponse
from moto.dynamodb.models.table import Table
from moto.server import main

_track = BaseModel.__new__


def _new_model(cls, *args, **kwargs):
    if cls.__module__.startswith("moto.dynamodb."):
        return object.__new__(cls)
    return _track(cls, *args, **kwargs)


BaseModel.__new__ = _new_model


class _CopyEachTableOnce:
    """`copy` as the DynamoDB backend sees it, remembering a transaction's table backups."""

    def __init__(self):
        self.backups = threading.local()

    def deepcopy(self, value):
        taken = getattr(self.backups, "taken", None)
        if taken is None or not isinstance(value, Table):
            return copy.deepcopy(value)
        if id(value) not in taken:
            taken[id(value)] = copy.deepcopy(value)
        return taken[id(value)]


_copies = _CopyEachTableOnce()
dynamodb_models.copy = _copies
_transact = dynamodb_models.DynamoDBBackend.transact_write_items
_one_at_a_time = threading.Lock()


def _transact_write_items(backend, transact_items):
    with _one_at_a_time:
        _copies.backups.taken = {}
        try:
            return _transact(backend, transact_items)
        finally:
            _copies.backups.taken = None


dynamodb_models.DynamoDBBackend.transact_write_items = _transact_write_items

_calls_file = os.environ.get("ENVPLANE_BENCH_CALLS")
if _calls_file:
    _calls = open(_calls_file, "a", buffering=1)
    _call_action = BaseResponse.call_action

    def _recorded_call_action(response):
        started = time.perf_counter()
        answer = _call_action(response)
        seconds = time.perf_counter() - started
        index, items = "-", "-"
        if response.service_name == "dynamodb":
            body = response.body
            if isinstance(body, (str, bytes)):
                body = json.loads(body or "{}")
            index = body.get("IndexName", "-")
            if body.get("Select") == "COUNT":
                index += "/count"
            if "RequestItems" in body:
                items = sum(len(table.get("Keys", ())) for table in body["RequestItems"].values())
            else:
                try:
                    items = json.loads(answer[2]).get("Count", "-")
                except (TypeError, ValueError, IndexError, AttributeError):
                    pass
        _calls.write(f"{response.service_name} {response._get_action()} {index} {seconds:.6f} {items}\n")
        return answer

    BaseResponse.call_action = _recorded_call_action

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
