"""Benchmark: one full Warden cycle against the Coder simulator at 1k and 10k workspaces.

For each fleet size it starts the simulator in its own process, then measures, each
in a fresh process (so peak RSS belongs to that measurement alone):

- baseline: a bare aiohttp loop that fetches and parses the same pages;
- warden:   one full `Daemon.run_cycle` (observe all pages, record, accrue spend in
            UTC and Berlin days, review a per-owner budget, decide, act) on a fresh
            SQLite file, with a policy set that matches every workspace.

It prints wall time, requests sent and peak RSS for both, and the ratio warden/baseline.
Run with `make bench`.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

TOKEN = "bench-token-0123456789"
PAGE_SIZE = 100
CONCURRENCY = 8
SIZES = (1_000, 10_000)
POLICY = """
version: 1
settings: {max_actions_per_cycle: 0, dry_run: true}
providers:
  coder-bench: {type: coder, url: "%(url)s", token: "${BENCH_TOKEN}", page_size: %(page)d, concurrency: %(conc)d}
pricing:
  coder-bench: {usd_per_credit: 0.10}  # so that every cycle also accrues spend
policies:
  - {name: idle, when: {idle_for: 2h}, warn_before: 15m}
  - {name: lifetime, when: {running_for: 12h}, extend: {by: 2h, max: 2}}
budgets:  # so that every cycle also keeps Berlin days and reviews a budget per owner
  - name: team-monthly
    budget: {per: owner, window: month, limit_usd: 500, timezone: Europe/Berlin}
    thresholds: [{at: 80%%}, {at: 100%%, forecast: true}]
"""


def serve(count: int) -> None:
    """Child process: serve a simulated fleet of `count` workspaces; print the port."""
    from aiohttp import web

    from warden.sim.coder import CoderSim

    async def main() -> None:
        sim = CoderSim(token=TOKEN)
        sim.populate(count, datetime.now(UTC), seed=42)
        runner = web.AppRunner(sim.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


async def baseline(url: str) -> dict[str, float]:
    """Fetch and parse every page with nothing but aiohttp, with the same concurrency."""
    import aiohttp

    headers = {"Coder-Session-Token": TOKEN}
    limit = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(headers=headers) as http:

        async def page(offset: int) -> dict:
            async with (
                limit,
                http.get(
                    f"{url}/api/v2/workspaces", params={"limit": PAGE_SIZE, "offset": offset}
                ) as resp,
            ):
                return json.loads(await resp.read())

        start = time.perf_counter()
        first = await page(0)
        rest = await asyncio.gather(*(page(o) for o in range(PAGE_SIZE, first["count"], PAGE_SIZE)))
        seen = len(first["workspaces"]) + sum(len(p["workspaces"]) for p in rest)
        wall = time.perf_counter() - start
    return {"wall": wall, "requests": 1 + len(rest), "workspaces": seen}


async def warden_cycle(url: str) -> dict[str, float]:
    """One full daemon cycle, as `warden run --once` would do it."""
    from warden.daemon import Daemon, load_policy_set
    from warden.settings import Settings

    with tempfile.TemporaryDirectory() as state:
        policy = Path(state) / "bench.yaml"
        policy.write_text(POLICY % {"url": url, "page": PAGE_SIZE, "conc": CONCURRENCY})
        settings = Settings(policy_path=[policy], state_dir=Path(state))
        env = {"BENCH_TOKEN": TOKEN}
        policies = load_policy_set(settings, env)
        async with Daemon(settings, policies=policies, env=env) as daemon:
            start = time.perf_counter()
            [result] = await daemon.run_cycle()
            wall = time.perf_counter() - start
            start = time.perf_counter()
            [steady] = await daemon.run_cycle()  # the next poll: warnings already given
            steady_wall = time.perf_counter() - start
    assert result.observation is not None, result.error
    return {
        "wall": wall,
        "steady_wall": steady_wall,
        "requests": result.observation.requests,
        "workspaces": len(result.observation.workspaces),
        "decisions": len(result.decisions),
        "steady_decisions": len(steady.decisions),
    }


def measure(kind: str, url: str) -> None:
    """Child process: run one measurement and print it as JSON with the peak RSS."""
    from warden.logging import configure_logging

    configure_logging(level="error", fmt="json")
    figures = asyncio.run(baseline(url) if kind == "baseline" else warden_cycle(url))
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> None:
    print(
        f"{'fleet':>7} {'what':<9} {'wall s':>8} {'requests':>9} {'peak RSS MiB':>13} {'ratio':>6}"
    )
    for size in SIZES:
        server = subprocess.Popen(
            [sys.executable, __file__, "serve", str(size)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
            child("measure", "baseline", url)  # warm the simulator's page cache; not counted
            base = child("measure", "baseline", url)
            ours = child("measure", "warden", url)
        finally:
            server.terminate()
            server.wait()
        assert ours["workspaces"] == base["workspaces"] == size, (ours, base)
        steady = dict(ours, wall=ours["steady_wall"])
        rows = (
            ("baseline", base, ""),
            ("warden", ours, f"{ours['wall'] / base['wall']:.2f}"),
            ("  steady", steady, f"{steady['wall'] / base['wall']:.2f}"),
        )
        for name, figures, shown in rows:
            print(
                f"{size:>7} {name:<9} {figures['wall']:>8.3f} {figures['requests']:>9.0f} "
                f"{figures['peak_rss_mib']:>13.1f} {shown:>6}"
            )
    print("ratio = warden wall time / baseline wall time, measured in this run")
    print("warden: the first cycle (every idle workspace warned: one decision, event and")
    print("warning row each); steady: the next cycle over the same fleet")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "measure":
        measure(sys.argv[2], sys.argv[3])
    else:
        run()
