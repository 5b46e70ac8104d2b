"""The daemon's process set-up: the collector tuned as `warden.runtime` says."""

from __future__ import annotations

import json
import subprocess
import sys

from warden.runtime import YOUNG_THRESHOLD

PROBE = """
import gc, json
from warden.runtime import tune_garbage_collector
before = gc.get_threshold()
tune_garbage_collector()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_the_collector_runs_less_often_and_leaves_start_up_objects_alone() -> None:
    # In a process of its own: the collector's settings are the whole process's.
    out = subprocess.run(  # noqa: S603 - this interpreter and our own probe
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    figures = json.loads(out.stdout)
    before, after = figures["before"], figures["after"]
    assert after[0] == YOUNG_THRESHOLD > before[0]
    assert after[1:] == before[1:]  # the older generations keep their ratios
    assert figures["frozen"] > 1000  # the modules' objects, out of every collection
