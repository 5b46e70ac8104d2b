"""Benchmark: how late an action runs after it falls due, between polls, at fleet scale.

A Coder simulator with N running workspaces (a child process) of which a few are idle;
the daemon runs with its scheduler, a poll every hour, and `warn_before` long enough
that the first cycle (which lists all N and warns the idle ones) ends before the
deadline. The exact-time due job then reads again only the due workspaces, decides
and stops them. Printed: the first cycle's wall time, and for each stop, how long after
its deadline it landed (the figure the issue bounds at 1 s at 100k).

    python bench/due_latency.py [--json PATH] [N ...]      (default: 10000 100000)

`--json PATH` writes the figures there too, for `bench/cycle.py --due-latency PATH`
(the goals block of `make bench`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

TOKEN = "bench-token-0123456789"
IDLE = 5
POLICY = """
version: 1
settings: {max_actions_per_cycle: 100, max_percent_per_cycle: 100%%}
providers:
  coder-bench: {type: coder, url: "%(url)s", token: "${BENCH_TOKEN}", page_size: 1000, poll_interval: 1h}
policies:
  - {name: idle, when: {idle_for: 2h}, warn_before: %(lead)ds}
"""


def serve(count: int) -> None:
    """Child process: `count` running workspaces, IDLE of them idle for 3 h; the port."""
    from warden.sim.coder import CoderSim
    from warden.sim.serving import serve

    async def main() -> None:
        now = datetime.now(UTC)
        sim = CoderSim(token=TOKEN, build_seconds=1)
        for i in range(count):
            used = now - timedelta(hours=3) if i < IDLE else now
            sim.add_workspace(name=f"ws-{i:06d}", owner=f"u{i % 997}", last_used_at=used)
        async with serve(sim.app()) as url:
            print(url.rsplit(":", 1)[1], flush=True)  # the port, for the parent
            await asyncio.Event().wait()

    asyncio.run(main())


async def measure(url: str, lead: int) -> tuple[float, list[float]]:
    from warden.clock import utc_now
    from warden.daemon import Daemon, load_policy_set
    from warden.logging import configure_logging
    from warden.settings import Settings

    configure_logging(level="error", fmt="json")
    late: list[float] = []
    first: list[float] = []
    done = asyncio.Event()

    def on_cycle(result) -> None:  # type: ignore[no-untyped-def]
        now = utc_now()
        if not first:
            first.append(time.perf_counter())
        if os.environ.get("BENCH_VERBOSE"):
            print("cycle", result.seconds, len(result.outcome.done), file=sys.stderr)
        for decision in result.outcome.done:
            due = datetime.fromisoformat(str(decision.facts["due_at"]))
            late.append((now - due).total_seconds())
        if len(late) >= IDLE:
            done.set()

    with tempfile.TemporaryDirectory() as state:
        policy = Path(state) / "bench.yaml"
        policy.write_text(POLICY % {"url": url, "lead": lead})
        settings = Settings(policy_path=[policy], state_dir=Path(state))
        env = {"BENCH_TOKEN": TOKEN}
        async with Daemon(
            settings, policies=load_policy_set(settings, env), env=env, on_cycle=on_cycle
        ) as daemon:
            started = time.perf_counter()
            daemon.start_scheduler()
            await asyncio.wait_for(done.wait(), timeout=lead + 600)
    return first[0] - started, late


def run(sizes: list[int], json_path: str | None = None) -> None:
    print(f"{'fleet':>8} {'first cycle s':>14} {'after due s (each stop)':>30}")
    figures = []
    for size in sizes:
        server = subprocess.Popen(
            [sys.executable, __file__, "serve", str(size)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
            lead = 30 + size // 1000  # the first cycle must end before the deadline
            first, late = asyncio.run(measure(url, lead))
        finally:
            server.terminate()
            server.wait()
        shown = ", ".join(f"{s:.2f}" for s in sorted(late))
        print(f"{size:>8} {first:>14.1f} {shown:>30}", flush=True)
        figures.append({"workspaces": size, "first_cycle_s": first, "after_due_s": sorted(late)})
    if json_path:
        Path(json_path).write_text(json.dumps({"sizes": figures}, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        args = sys.argv[1:]
        path = None
        if "--json" in args:
            at = args.index("--json")
            path, args = args[at + 1], args[:at] + args[at + 2 :]
        run([int(a) for a in args] or [10_000, 100_000], path)
