"""Benchmark: one full Warden cycle against the Coder simulator, what issue 13 asks.

For each fleet size (1k, 10k and 100k workspaces by default) it starts the simulator
in its own process (and reads the port it prints), then measures, each in a fresh
process so that peak RSS (`ru_maxrss`) belongs to that measurement alone:

- baseline: a bare aiohttp loop that fetches and parses the same pages with the same
            concurrency (the floor any poller has to pay), in this same run;
- warden:   for each store (SQLite, PostgreSQL), on a fresh empty database: the first
            cycle (observe all pages, record, accrue spend in UTC and Berlin days,
            review a per-owner budget, decide, warn every idle workspace) and the
            steady cycle right after it, over the same fleet with nothing changed on
            the platform, one second later on the daemon's own clock (a ManualClock:
            however long the first cycle took, no workspace crosses a threshold in
            between, so what the steady cycle writes is what a quiet poll writes).

Both cycles run as the scheduler's poll job does (`Daemon.run_provider_cycle`), after
the balance round that claims the provider's shard at start-up, in a process set up as
`warden run` sets up its own (`warden.runtime.tune_garbage_collector`); the baseline
keeps Python's default collector, as a bare client would. The lease lasts an hour:
renewing it is the scheduler's job between cycles, kept out of the measured ones.

Printed per cycle: wall time, the per-phase split (`CycleResult.seconds`: list,
remember, decide, act, tell; "other" is the rest of the wall time), requests, peak
RSS, the ratio warden / baseline and the rows written. Writes are counted from outside
the daemon: an `after_cursor_execute` listener on the store engine's `sync_engine`
counts each INSERT, UPDATE and DELETE and, by table, the rows it changed as the driver
reports them (so an INSERT ... ON CONFLICT DO NOTHING of rows already there counts
none); where the driver cannot tell (asyncpg's executemany), each parameter set sent
counts a row. Then a block of issue 13's goals, each with the figure measured and
PASS or MISS. Baseline: median of `--baseline-runs`; warden: median of `--runs` below
100k, of `--large-runs` (default 1, for time: ~2 minutes a run) at 100k.

PostgreSQL: `BENCH_POSTGRES_URL`, else `WARDEN_TEST_POSTGRES_URL`, else the test
server at 127.0.0.1:5432. Each measurement gets a database of its own (created here,
given to the daemon as `database_url`, dropped afterwards, as the chaos tests do);
a server that does not answer is said in one line, and the run goes on with SQLite.

    python bench/cycle.py [--sizes 1000,10000] [--stores sqlite,postgres] [--runs 3]
        [--large-runs 1] [--baseline-runs 3] [--due-latency PATH] [--json PATH]
        [--markdown]

`--due-latency` reads `bench/due_latency.py --json`'s figures for the latency goal
(`make bench` runs that first). Run with `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TOKEN = "bench-token-0123456789"
PAGE_SIZE = 100
CONCURRENCY = 8
SIZES = (1_000, 10_000, 100_000)
STORES = ("sqlite", "postgres")
LARGE = 100_000  # from this size on, `--large-runs` warden runs instead of `--runs`
PHASES = ("list", "remember", "decide", "act", "tell")
MARKER = "cycles"  # the table of the cycle marker (`Store.mark_cycle`)
CHILD_TIMEOUT = 1800  # seconds: a measurement that hangs fails instead of the whole run
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL",
    os.environ.get("WARDEN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
)
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

# ---------------------------------------------------------------- child: the simulator


def serve(count: int) -> None:
    """Child process: serve a simulated fleet of `count` workspaces; print the port."""
    from warden.sim.coder import CoderSim
    from warden.sim.serving import serve

    async def main() -> None:
        sim = CoderSim(token=TOKEN)
        sim.populate(count, datetime.now(UTC), seed=42)
        unhold(sim)
        async with serve(sim.app()) as url:
            print(url.rsplit(":", 1)[1], flush=True)  # the port, for the parent
            await asyncio.Event().wait()

    asyncio.run(main())


def unhold(sim: Any) -> None:
    """Take the seeded in-progress builds (about 7% of the fleet, each held starting or
    stopping until `settle()`, which nothing here calls) off the simulator's list of
    builds to move along: it walks that list on every request, and `_advance` does
    nothing to a held build anyway. Left on, it costs the simulator O(fleet) per page,
    O(fleet²) per listing (at 100k, 12 of the bare loop's 14 s), and both the baseline
    and the cycle would measure the simulator instead of the client."""
    busy = getattr(sim, "_busy", None)
    if not isinstance(busy, set):
        return  # another simulator: measure it as it is
    for workspace_id in list(busy):
        build = sim._workspaces[workspace_id].latest
        if build.runs_at is None and build.ends_at is None:
            busy.discard(workspace_id)


@contextmanager
def simulator(count: int) -> Iterator[str]:
    """The simulator's URL while it runs; terminated (and waited for) afterwards."""
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", str(count)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()  # printed once it listens
        if not port.isdigit():
            raise RuntimeError(f"the simulator did not start (exit {server.wait()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


# ---------------------------------------------------------------- child: measurements


async def baseline(url: str) -> dict[str, Any]:
    """Fetch and parse every page with nothing but aiohttp, with the same concurrency."""
    import aiohttp

    headers = {"Coder-Session-Token": TOKEN}
    limit = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(headers=headers) as http:

        async def page(offset: int) -> dict[str, Any]:
            async with (
                limit,
                http.get(
                    f"{url}/api/v2/workspaces", params={"limit": PAGE_SIZE, "offset": offset}
                ) as resp,
            ):
                body: dict[str, Any] = json.loads(await resp.read())
                return body

        start = time.perf_counter()
        first = await page(0)
        rest = await asyncio.gather(*(page(o) for o in range(PAGE_SIZE, first["count"], PAGE_SIZE)))
        seen = len(first["workspaces"]) + sum(len(p["workspaces"]) for p in rest)
        wall = time.perf_counter() - start
    return {"wall": wall, "requests": 1 + len(rest), "workspaces": seen}


WRITE = re.compile(
    r"^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)"
    r"\s+(?:ONLY\s+)?([\w.\"]+)",
    re.IGNORECASE,
)


class Writes:
    """INSERT, UPDATE and DELETE statements seen on an engine, and the rows they
    changed, by table: counted by SQLAlchemy events, outside the daemon's code."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, int]] = {}

    def attach(self, sync_engine: Any) -> None:
        from sqlalchemy import event

        event.listen(sync_engine, "after_cursor_execute", self._executed)

    def take(self) -> dict[str, dict[str, int]]:
        """What was counted since the last take, and start again."""
        tables, self.tables = self.tables, {}
        return tables

    def _executed(
        self,
        _conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> None:
        found = WRITE.match(statement)
        if found is None:
            return
        table = found.group(1).replace('"', "").rsplit(".", 1)[-1].lower()
        # An executemany's parameters are a list of rows; "insertmanyvalues" (one INSERT
        # ... VALUES (...), (...) per batch) is reported as an executemany, but its
        # parameters are flat and the driver counts its rows like a single statement's.
        many = executemany and bool(parameters) and isinstance(parameters[0], tuple | list | dict)
        # The rows the statement changed, as the driver reports them; where it cannot
        # (asyncpg's executemany), the rows sent.
        counted = getattr(cursor, "rowcount", -1)
        known = counted is not None and counted >= 0
        rows = counted if known else (len(parameters) if many else 1)
        counts = self.tables.setdefault(table, {"statements": 0, "rows": 0})
        counts["statements"] += 1
        counts["rows"] += rows


async def warden_cycles(url: str, database_url: str | None) -> dict[str, Any]:
    """The first and the steady cycle of one provider, on a fresh database."""
    from warden.clock import ManualClock
    from warden.daemon import Daemon, load_policy_set
    from warden.runtime import tune_garbage_collector
    from warden.settings import Settings

    with tempfile.TemporaryDirectory() as state:
        policy = Path(state) / "bench.yaml"
        policy.write_text(POLICY % {"url": url, "page": PAGE_SIZE, "conc": CONCURRENCY})
        settings = Settings(
            policy_path=[policy],
            state_dir=Path(state),  # SQLite: a fresh file in a fresh directory
            database_url=database_url,
            lease_ttl=3600,
        )
        env = {"BENCH_TOKEN": TOKEN}
        policies = load_policy_set(settings, env)
        # The daemon's own clock, moved by hand: the steady cycle comes a second after the
        # first on it, however long the first took, so that nothing changes in between
        # unless the platform changed (at 100k the first takes ~40 s of wall time, in
        # which a few dozen of the simulator's workspaces would cross the idle line).
        clock = ManualClock(datetime.now(UTC))
        tune_garbage_collector()  # as `warden run` does before it starts the daemon
        async with Daemon(settings, policies=policies, env=env, clock=clock) as daemon:
            assert daemon.store is not None
            writes = Writes()
            writes.attach(daemon.store.engine.sync_engine)
            await daemon.balance()  # start-up: claim the provider's shard
            [name] = daemon.providers
            writes.take()
            cycles = []
            for _ in ("first", "steady"):
                start = time.perf_counter()
                result = await daemon.run_provider_cycle(name)
                wall = time.perf_counter() - start
                assert result.observation is not None, result.error
                cycles.append(
                    {
                        "wall": wall,
                        "phases": dict(result.seconds),
                        "other": wall - sum(result.seconds.values()),
                        "requests": result.observation.requests,
                        "workspaces": len(result.observation.workspaces),
                        "decisions": len(result.decisions),
                        "writes": writes.take(),
                    }
                )
                del result  # the daemon keeps no result: neither does the measurement
                clock.advance(seconds=1)
    return {"first": cycles[0], "steady": cycles[1]}


def measure(kind: str, url: str) -> None:
    """Child process: run one measurement and print it as JSON with the peak RSS."""
    from warden.logging import configure_logging

    configure_logging(level="error", fmt="json")
    if kind == "baseline":
        figures = asyncio.run(baseline(url))
    else:
        figures = asyncio.run(warden_cycles(url, os.environ.get("BENCH_DATABASE_URL")))
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    print(json.dumps(figures))


def child(kind: str, url: str, database_url: str | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("BENCH_DATABASE_URL", None)
    if database_url is not None:
        env["BENCH_DATABASE_URL"] = database_url  # not on the command line: a password
    out = subprocess.run(
        [sys.executable, __file__, "measure", kind, url],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{kind} measurement failed (exit {out.returncode}):\n{tail}")
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


# ---------------------------------------------------------------- PostgreSQL databases


def _hidden(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def _admin(statement: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from warden.store.engine import async_url

    engine = create_async_engine(
        async_url(POSTGRES_URL),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"timeout": 5},
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def postgres_problem() -> str | None:
    """Why the PostgreSQL measurements cannot run (one line), or None."""
    probe = f"warden_bench_probe_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{probe}"'))
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{probe}" WITH (FORCE)'))
    except Exception as e:  # unreachable, refused, or no right to create a database
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"PostgreSQL at {_hidden(POSTGRES_URL)} cannot be used ({first[:160]})"
    return None


@contextmanager
def fresh_database(store: str) -> Iterator[str | None]:
    """The `database_url` of a fresh, empty database for one measurement: None for
    SQLite (the daemon makes a new file in its temporary state directory); on
    PostgreSQL a database of its own, dropped afterwards."""
    if store == "sqlite":
        yield None
        return
    from sqlalchemy.engine import make_url

    name = f"warden_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ---------------------------------------------------------------- the run


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One cycle's figures over runs: the median of each time (so that the phases of a
    row need not add up to exactly its wall time), the most rows written."""
    first = runs[0]
    return {
        "wall": statistics.median(r["wall"] for r in runs),
        "walls": [r["wall"] for r in runs],
        "phases": {
            p: statistics.median(r["phases"].get(p, 0.0) for r in runs)
            for p in dict.fromkeys([*PHASES, *first["phases"]])
        },
        "other": statistics.median(r["other"] for r in runs),
        "requests": max(r["requests"] for r in runs),
        "workspaces": first["workspaces"],
        "decisions": first["decisions"],
        "writes": max(
            (r["writes"] for r in runs), key=lambda w: sum(t["rows"] for t in w.values())
        ),
    }


def measure_size(
    size: int, stores: list[str], runs: int, baseline_runs: int
) -> list[dict[str, Any]]:
    """Every measurement at one fleet size, against one simulator."""
    results: list[dict[str, Any]] = []
    with simulator(size) as url:
        child("baseline", url)  # warm the simulator's page cache; not counted
        bases = [child("baseline", url) for _ in range(baseline_runs)]
        assert all(b["workspaces"] == size for b in bases), bases
        base = {
            "wall": statistics.median(b["wall"] for b in bases),
            "walls": [b["wall"] for b in bases],
            "requests": bases[0]["requests"],
            "peak_rss_mb": max(b["peak_rss_mb"] for b in bases),
        }
        results.append({"size": size, "store": None, "cycle": "baseline", **base})
        for store in stores:
            done: list[dict[str, Any]] = []
            try:
                for _ in range(runs):
                    with fresh_database(store) as database_url:
                        done.append(child("warden", url, database_url))
            except Exception as e:  # said, and the other stores still run
                print(f"{size:>7} {store:<8} failed: {e}", flush=True)
                results.append({"size": size, "store": store, "cycle": "failed", "error": str(e)})
                continue
            rss = max(d["peak_rss_mb"] for d in done)
            for cycle in ("first", "steady"):
                figures = median_of([d[cycle] for d in done])
                assert figures["workspaces"] == size, figures
                results.append(
                    {
                        "size": size,
                        "store": store,
                        "cycle": cycle,
                        "runs": runs,
                        **figures,
                        "peak_rss_mb": rss,  # of the process that ran both cycles
                        "ratio": figures["wall"] / base["wall"],
                    }
                )
    return results


HEAD = (
    f"{'fleet':>7} {'store':<8} {'cycle':<8} {'wall s':>7} {'ratio':>6} "
    + " ".join(f"{p[:8]:>8}" for p in (*PHASES, "other"))
    + f" {'requests':>8} {'RSS MB':>7} {'rows written':>12}"
)


def row(r: dict[str, Any]) -> str:
    store = r["store"] or "-"
    start = f"{r['size']:>7} {store:<8} {r['cycle']:<8} {r['wall']:>7.3f}"
    if r["cycle"] == "baseline":
        return (
            f"{start} {'':>6} "
            + " ".join(f"{'':>8}" for _ in (*PHASES, "other"))
            + f" {r['requests']:>8} {r['peak_rss_mb']:>7.0f} {'':>12}"
        )
    phases = [r["phases"].get(p, 0.0) for p in PHASES]
    other = r["other"]
    written = sum(t["rows"] for t in r["writes"].values())
    return (
        f"{start} {r['ratio']:>6.2f} "
        + " ".join(f"{s:>8.3f}" for s in (*phases, other))
        + f" {r['requests']:>8} {r['peak_rss_mb']:>7.0f} {written:>12}"
    )


def tables_written(writes: dict[str, dict[str, int]]) -> str:
    if not writes:
        return "nothing"
    return ", ".join(
        f"{table} ({t['rows']} rows, {t['statements']} statements)"
        for table, t in sorted(writes.items(), key=lambda kv: -kv[1]["rows"])
    )


def find(results: list[dict[str, Any]], size: int, store: str | None, cycle: str) -> Any:
    return next(
        (r for r in results if r["size"] == size and r["store"] == store and r["cycle"] == cycle),
        None,
    )


class Goals:
    """Issue 13's goals, each with the figure measured here: PASS, MISS or n/a (not
    measured in this run)."""

    def __init__(self, results: list[dict[str, Any]], stores: list[str]) -> None:
        self.results, self.stores = results, stores
        self.verdicts: list[dict[str, Any]] = []

    def goal(self, what: str, figure: str | None = None, ok: bool | None = None) -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        self.verdicts.append(
            {"goal": what, "measured": figure or "not measured", "verdict": verdict}
        )

    def speed(self) -> None:
        """One cycle <= 1.5x the bare baseline at 10k and 100k, on each store."""
        for size in (10_000, 100_000):
            for store in self.stores:
                for cycle in ("first", "steady"):
                    what = f"{cycle} cycle <= 1.5x baseline, {size // 1000}k {store}"
                    if (r := find(self.results, size, store, cycle)) is None:
                        self.goal(what)
                        continue
                    base = r["wall"] / r["ratio"]
                    shown = f"{r['ratio']:.2f}x ({r['wall']:.2f} s / {base:.2f} s)"
                    self.goal(what, shown, r["ratio"] <= 1.5)

    def scale(self) -> None:
        """The 100k cycle <= 11x the 10k one."""
        for store in self.stores:
            for cycle in ("first", "steady"):
                what = f"{cycle} cycle 100k <= 11x 10k, {store}"
                big = find(self.results, 100_000, store, cycle)
                small = find(self.results, 10_000, store, cycle)
                if big is None or small is None:
                    self.goal(what)
                    continue
                times = big["wall"] / small["wall"]
                shown = f"{times:.1f}x ({big['wall']:.2f} s / {small['wall']:.2f} s)"
                self.goal(what, shown, times <= 11)

    def memory(self) -> None:
        """Peak RSS <= 400 MB at 100k."""
        for store in self.stores:
            what = f"peak RSS <= 400 MB at 100k, {store}"
            if (r := find(self.results, 100_000, store, "first")) is None:
                self.goal(what)
            else:
                self.goal(what, f"{r['peak_rss_mb']:.0f} MB", r["peak_rss_mb"] <= 400)

    def writes(self) -> None:
        """A steady cycle writes nothing but the cycle marker (rows changed > 0)."""
        steady = [r for r in self.results if r["cycle"] == "steady"]
        for r in steady:
            others = {t: w for t, w in r["writes"].items() if t != MARKER and w["rows"] > 0}
            shown = f"{sum(w['rows'] for w in others.values())} rows besides `{MARKER}`"
            if others:
                shown += f" ({', '.join(sorted(others))})"
            what = f"steady cycle writes only the cycle marker, {r['size'] // 1000}k {r['store']}"
            self.goal(what, shown, not others)
        if not steady:
            self.goal("steady cycle writes only the cycle marker")

    def latency(self, figures: dict[str, Any] | None) -> None:
        """An action lands <= 1 s after it falls due at 100k (bench/due_latency.py)."""
        what = "action latency after due <= 1 s at 100k"
        sizes = (figures or {}).get("sizes", [])
        at = next((s for s in sizes if s["workspaces"] == 100_000 and s["after_due_s"]), None)
        if at is None:
            self.goal(what, "not measured (bench/due_latency.py --json, then --due-latency)")
        else:
            worst = max(at["after_due_s"])
            shown = f"{worst:.2f} s (the latest of {len(at['after_due_s'])} stops)"
            self.goal(what, shown, worst <= 1)


def goals(
    results: list[dict[str, Any]], stores: list[str], latency: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Every goal of issue 13, in the issue's order."""
    checked = Goals(results, stores)
    checked.speed()
    checked.scale()
    checked.memory()
    checked.writes()
    checked.latency(latency)
    return checked.verdicts


def markdown(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, for the README."""
    lines = [
        "| fleet | store | cycle | wall s | x baseline | "
        + " | ".join(PHASES)
        + " | requests | peak RSS MB | rows written |",
        "|" + "---:|" * (8 + len(PHASES)),
    ]
    for r in results:
        if r["cycle"] == "failed":
            continue
        cells = [f"{r['size']:,}", r["store"] or "bare aiohttp", r["cycle"], f"{r['wall']:.2f}"]
        if r["cycle"] == "baseline":
            cells += ["", *([""] * len(PHASES)), str(r["requests"]), f"{r['peak_rss_mb']:.0f}", ""]
        else:
            cells += [
                f"{r['ratio']:.1f}",
                *(f"{r['phases'].get(p, 0.0):.2f}" for p in PHASES),
                str(r["requests"]),
                f"{r['peak_rss_mb']:.0f}",
                str(sum(t["rows"] for t in r["writes"].values())),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    stores = list(args.stores)
    if "postgres" in stores and (problem := postgres_problem()):
        print(f"{problem}: measuring SQLite only", flush=True)
        stores = [s for s in stores if s != "postgres"]
    small = ", ".join(str(s) for s in args.sizes if s < LARGE)
    large = ", ".join(str(s) for s in args.sizes if s >= LARGE)
    print(
        f"Coder simulator, {PAGE_SIZE} workspaces a page, {CONCURRENCY} requests at a time;\n"
        f"baseline: median of {args.baseline_runs} runs; warden: "
        + (f"median of {args.runs} runs at {small}" if small else "")
        + ("; " if small and large else "")
        + (f"{args.large_runs} run(s) at {large} (time)" if large else "")
        + f"; stores: {', '.join(stores)}"
        + (f" (PostgreSQL at {_hidden(POSTGRES_URL)})" if "postgres" in stores else ""),
        flush=True,
    )
    print(HEAD, flush=True)
    results: list[dict[str, Any]] = []
    for size in args.sizes:
        runs = args.large_runs if size >= LARGE else args.runs
        for r in measure_size(size, stores, runs, args.baseline_runs):
            results.append(r)
            if r["cycle"] != "failed":
                print(row(r), flush=True)
    print(
        "ratio = warden wall time / the baseline's, both measured in this run; phases from\n"
        "CycleResult.seconds (other = wall - their sum); each figure the median of the runs;\n"
        "RSS = ru_maxrss of the measuring process (for warden, the one that ran both\n"
        "cycles), the worst run's; first: a fresh database, every idle workspace warned\n"
        "(dry run); steady: the next cycle, a second later on the daemon's clock, nothing\n"
        "changed on the platform; rows written: rows changed"
    )
    print("\nwritten by the steady cycle (tables, most rows first):")
    for r in results:
        if r["cycle"] == "steady":
            print(f"  {r['size']:>7} {r['store']:<8} {tables_written(r['writes'])}")
    latency = json.loads(Path(args.due_latency).read_text()) if args.due_latency else None
    verdicts = goals(results, stores, latency)
    print("\ngoals (issue 13), measured in this run:")
    width = max(len(g["goal"]) for g in verdicts)
    for g in verdicts:
        print(f"  {g['verdict']:<4}  {g['goal']:<{width}}  {g['measured']}")
    elapsed = time.perf_counter() - started
    print(f"\nbench/cycle.py took {elapsed:.0f} s")
    if args.markdown:
        print("\n" + markdown(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "page_size": PAGE_SIZE,
                    "concurrency": CONCURRENCY,
                    "sizes": args.sizes,
                    "stores": stores,
                    "runs": args.runs,
                    "large_runs": args.large_runs,
                    "baseline_runs": args.baseline_runs,
                    "results": results,
                    "goals": verdicts,
                    "due_latency": latency,
                    "seconds": elapsed,
                },
                indent=2,
            )
            + "\n"
        )


def arguments() -> argparse.Namespace:
    def numbers(text: str) -> list[int]:
        return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]

    def names(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        if unknown := set(chosen) - set(STORES):
            raise argparse.ArgumentTypeError(f"unknown store(s): {', '.join(sorted(unknown))}")
        return chosen

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=numbers, default=list(SIZES), help="e.g. 1000,10000")
    parser.add_argument("--stores", type=names, default=list(STORES), help="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=3, help="warden runs below 100k (median)")
    parser.add_argument("--large-runs", type=int, default=1, help="warden runs at 100k and up")
    parser.add_argument("--baseline-runs", type=int, default=3, help="baseline runs (median)")
    parser.add_argument("--due-latency", metavar="PATH", help="bench/due_latency.py --json")
    parser.add_argument("--json", metavar="PATH", help="write every figure here as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    return parser.parse_args()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "measure":
        measure(sys.argv[2], sys.argv[3])
    else:
        run(arguments())
