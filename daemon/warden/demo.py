"""`warden demo`: the daemon against the built-in simulators, with demo policies.

Everything is real except the platforms: the simulators are aiohttp servers on
ephemeral ports of 127.0.0.1, the state is a SQLite file (in a temporary folder, or
the one `--state-dir` names, kept for `warden explain` and `warden spend`), and the
daemon runs its scheduler as in production. What it does is printed as readable
lines, each with the rule and the fact it rests on; at the end, counts by verb and
the money the stops avoided. Ctrl-C ends it as SIGINT ends `warden run`: in-flight
actions finish and are recorded, then the summary, then exit 130.
"""

from __future__ import annotations

import secrets
import shlex
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import anyio

from warden.clock import monotonic, utc_now
from warden.cycle import CycleResult
from warden.daemon import Daemon, load_policy_set
from warden.exits import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK
from warden.logging import REDACTOR, configure_logging
from warden.model import Decision, State, Verb, Workspace, WorkspaceId
from warden.policy.durations import format_duration
from warden.policy.loader import PolicySet
from warden.report import (
    USD_SHOWN,
    budget_lines,
    label_of,
    left_alone_lines,
    line,
    outcome_lines,
    who,
)
from warden.settings import Settings
from warden.sim.agentrun import AgentRunSim
from warden.sim.coder import CoderSim
from warden.sim.mage import MageCloudSim, MageSim
from warden.sim.serving import serve
from warden.sim.strongly import StronglySim
from warden.spend.pricing import Rate, hourly_rate
from warden.spend.report import spend_table, totals

DEMO_POLICIES = Path(__file__).parent / "sim" / "demo-policies.yaml"
DEFAULT_SECONDS = 75.0
QUIET_AFTER = 15.0  # seconds without a line before the demo says what it is waiting for
IDLE_LIMIT = timedelta(minutes=30)  # idle-dev's `idle_for` and `warn_before` in the
WARN_LEAD = timedelta(seconds=20)  # demo policies: the scripted workspaces are set by them
STORE_FILE = "warden.sqlite"


# ---------------------------------------------------------------- the platforms


@dataclass
class Simulators:
    """The demo's platforms, served on ephemeral ports; `env` fills the demo policies."""

    coder: CoderSim
    strongly: StronglySim
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    returning: str = ""  # the Coder workspace whose owner comes back after a warning

    def synced_at(self, ws: WorkspaceId) -> datetime | None:
        """When Strongly last synced a workspace's files to its volume (None: never)."""
        if ws.provider != "strongly-demo":
            return None
        return self.strongly.workspace(ws.native).last_synced_at


@asynccontextmanager
async def simulators(seconds: float = DEFAULT_SECONDS) -> AsyncIterator[Simulators]:
    """All five platforms' simulators, each with its demo fleet; two Coder workspaces
    timed to the demo's length, so that something happens in every part of it."""
    now = utc_now()
    coder = CoderSim(token=secrets.token_urlsafe(16), build_seconds=3.0)
    coder.seed_demo_fleet(now)
    strongly = StronglySim(api_key=secrets.token_urlsafe(16), start_seconds=3, ready_seconds=3)
    strongly.seed_demo_fleet(now)
    found = Simulators(coder=coder, strongly=strongly)
    found.returning = _seed_timed_workspaces(coder, now, seconds or DEFAULT_SECONDS)
    mage = MageSim(api_key=secrets.token_urlsafe(16), start_seconds=3)
    mage.seed_demo_fleet(now)
    cloud_password = secrets.token_urlsafe(12)
    mage_cloud = MageCloudSim(
        api_key=secrets.token_urlsafe(16), email="demo@example.com", password=cloud_password
    )
    mage_cloud.seed_demo_fleet(now)
    agentrun_token = secrets.token_urlsafe(16)
    agentrun = AgentRunSim(token=agentrun_token)
    async with (
        serve(coder.app()) as coder_url,
        serve(strongly.app()) as strongly_url,
        serve(mage.app()) as mage_url,
        serve(mage_cloud.app()) as mage_cloud_url,
        serve(agentrun.app()) as agentrun_url,
    ):
        found.env = {
            "DEMO_CODER_URL": coder_url,
            "DEMO_CODER_TOKEN": coder.token,
            "DEMO_STRONGLY_URL": strongly_url,
            "DEMO_STRONGLY_KEY": strongly.api_key,
            "DEMO_MAGE_URL": mage_url,
            "DEMO_MAGE_KEY": mage.api_key or "",
            "DEMO_MAGE_CLOUD_URL": mage_cloud_url,
            "DEMO_MAGE_CLOUD_KEY": mage_cloud.api_key,
            "DEMO_MAGE_CLOUD_PASSWORD": cloud_password,
            "DEMO_AGENTRUN_URL": agentrun_url,
            "DEMO_AGENTRUN_TOKEN": agentrun_token,
        }
        found.secrets = [v for k, v in found.env.items() if not k.endswith("_URL")]
        yield found


def _seed_timed_workspaces(coder: CoderSim, now: datetime, seconds: float) -> str:
    """`judy-back` is warned early and used again before the stop (the warning clears);
    `ivan-late` is warned at 40% of the demo and stopped after its warning. Returns judy's id."""
    hour = timedelta(hours=1)

    def idle_until_warned_at(fraction: float) -> timedelta:
        return IDLE_LIMIT - WARN_LEAD - timedelta(seconds=seconds * fraction)

    coder.add_workspace(
        name="ivan-late",
        owner="ivan",
        started_at=now - hour,
        last_used_at=now - idle_until_warned_at(0.4),
    )
    return coder.add_workspace(
        name="judy-back",
        owner="judy",
        started_at=now - hour,
        last_used_at=now - idle_until_warned_at(0.1),
    )


# ---------------------------------------------------------------- what is printed


@dataclass(frozen=True, slots=True)
class Stopped:
    """A workspace Warden stopped, and what it cost an hour when it was stopped."""

    ws: Workspace
    at: datetime
    rate: Rate


class DemoPrinter:
    """Prints what each cycle warned, did and left alone (the fleet once, at the start),
    counts it by verb, and keeps the stops for the summary."""

    def __init__(
        self, policies: PolicySet, *, synced_at: Callable[[WorkspaceId], datetime | None]
    ) -> None:
        self._policies = policies
        self._synced_at = synced_at
        self._shown: set[str] = set()
        self._latest: dict[str, list[Workspace]] = {}
        self._next_due: dict[str, datetime | None] = {}
        self._last_line = monotonic()
        self._last_news = utc_now()
        self.counts: Counter[str] = Counter()
        self.left_alone = 0
        self.stopped: list[Stopped] = []
        self.warned: list[Workspace] = []

    def __call__(self, result: CycleResult) -> None:
        if result.observation is None:
            if result.error is not None and not result.standby:
                self.say([line("UNREACHABLE", result.provider, result.error)])
            return
        workspaces = result.observation.workspaces
        self._latest[result.provider] = workspaces
        self._next_due[result.provider] = result.next_due
        names = {ws.id: ws for ws in workspaces}
        # A budget line first: it is the fact the kill switch below it rests on.
        budgets = budget_lines(result.review, now=result.observation.observed_at)
        synced = self._sync_lines(result.outcome.done, names)
        lines = [*budgets, *synced, *outcome_lines(result.outcome, names)]
        self._count(result)
        self.counts["SYNC"] += len(synced)
        self.counts["BUDGET"] += len(budgets)
        if result.provider not in self._shown:  # each provider's fleet, once
            self._shown.add(result.provider)
            alone = list(
                left_alone_lines(
                    workspaces,
                    result.decisions,
                    now=result.observation.observed_at,
                    policies=self._policies.policies,
                )
            )
            self.left_alone += len(alone)
            lines += alone
            lines += [
                line("SKIPPED", f"{result.provider}/{s.native_id}", s.reason)
                for s in result.observation.skipped
            ]
        self._keep_stops(result, names)
        self.say(lines, news=bool(lines))

    def say(self, lines: Iterable[str], *, news: bool = True) -> None:
        """Print lines, each with the time; remember when, for the quiet line."""
        now = utc_now()
        for text in lines:
            print(f"{now:%H:%M:%S} {text}", flush=True)
            self._last_line = monotonic()
            if news:
                self._last_news = now

    def _count(self, result: CycleResult) -> None:
        outcome = result.outcome
        for decision in [*outcome.warned, *outcome.cleared, *outcome.done, *outcome.planned]:
            self.counts[label_of(decision)] += 1
        self.counts["FAILED"] += len(outcome.failed)
        self.counts["WAIT"] += len(outcome.deferred)
        self.counts["HELD"] += len(outcome.held)

    def _sync_lines(
        self, done: Iterable[Decision], names: dict[WorkspaceId, Workspace]
    ) -> list[str]:
        """Strongly syncs a workspace's files to its volume before it stops it: the
        platform's own record of that sync, for each stop there."""
        lines = []
        for decision in done:
            synced = self._synced_at(decision.workspace) if decision.verb is Verb.STOP else None
            if synced is not None:
                text = (
                    f"{decision.policy}: files synced to the volume at {synced:%H:%M:%S} UTC, "
                    "before the stop (no sync, no stop)"
                )
                lines.append(line("SYNC", who(decision.workspace, names), text))
        return lines

    def _keep_stops(self, result: CycleResult, names: dict[WorkspaceId, Workspace]) -> None:
        """The warned and stopped workspaces, with the stops' prices, for the summary."""
        assert result.observation is not None
        pricing = self._policies.pricing.get(result.provider)
        self.warned += [names[d.workspace] for d in result.outcome.warned if d.workspace in names]
        for decision in result.outcome.done:
            ws = names.get(decision.workspace)
            if decision.verb in (Verb.STOP, Verb.KILL_SWITCH) and ws is not None:
                at = result.observation.observed_at
                self.stopped.append(Stopped(ws, at, hourly_rate(ws, pricing)))

    def example(self) -> tuple[Workspace, str] | None:
        """A workspace worth explaining, and what happened to it: a stopped one (on
        Coder if there is one: a warning, then a stop), else a warned one."""
        stopped = sorted((s.ws for s in self.stopped), key=_not_on_coder)
        if stopped:
            return stopped[0], "stopped"
        warned = sorted(self.warned, key=_not_on_coder)
        return (warned[0], "warned") if warned else None

    async def say_when_quiet(self) -> None:
        """After QUIET_AFTER seconds without a line, say what Warden is waiting for."""
        while True:
            wait = self._last_line + QUIET_AFTER - monotonic()
            if wait > 0:
                await anyio.sleep(wait)
                continue
            self.say([self.quiet_line()], news=False)

    def quiet_line(self) -> str:
        workspaces = [ws for found in self._latest.values() for ws in found]
        running = sum(1 for ws in workspaces if ws.state is State.RUNNING)
        intervals = [c.poll_interval for c in self._policies.providers.values()]
        due = [d for d in self._next_due.values() if d is not None]
        coming = (
            f"the next decision falls due at {min(due):%H:%M:%S} UTC" if due else "nothing is due"
        )
        every = format_duration(min(intervals)) if intervals else "?"
        return line(
            "WATCHING",
            f"{len(self._latest)} providers",
            f"nothing new since {self._last_news:%H:%M:%S} UTC; polling every {every}, "
            f"{running} of {len(workspaces)} workspaces running; {coming}",
        )

    def summary(self, *, started: datetime, ended: datetime) -> list[str]:
        """Counts by verb, and the money the stops avoided until the demo's end."""
        verbs = ", ".join(f"{label} {n}" for label, n in self.counts.most_common() if n)
        lines = [
            f"summary of {format_duration(ended - started)} "
            f"({started:%H:%M:%S}-{ended:%H:%M:%S} UTC):",
            f"  by verb: {verbs or 'nothing done'}; {self.left_alone} workspaces left alone "
            "when first seen",
        ]
        return lines + avoided_lines(self.stopped, ended=ended)


def _not_on_coder(ws: Workspace) -> bool:
    return ws.id.provider != "coder-demo"


def avoided_lines(stopped: Iterable[Stopped], *, ended: datetime) -> list[str]:
    """The money the stops avoided: each stopped workspace's price per hour times the time
    from its stop to the demo's end. A floor: nothing after the end is counted."""
    counted, unpriced, total = [], [], Decimal(0)
    for stop in stopped:
        if stop.rate.per_hour is None:
            unpriced.append(f"{stop.ws.id} ({stop.rate.missing})")
            continue
        left = max(ended - stop.at, timedelta(0))
        amount = stop.rate.per_hour * Decimal(left.total_seconds()) / Decimal(3600)
        total += amount
        counted.append(
            f"    {stop.ws.id} ({stop.ws.name}): ${stop.rate.per_hour.quantize(USD_SHOWN)}/h "
            f"x {format_duration(left)} = ${amount.quantize(USD_SHOWN)}"
        )
    if not counted and not unpriced:
        return ["  no stops yet, so nothing avoided"]
    lines = [
        f"  the stops avoided ${total.quantize(USD_SHOWN)} by the demo's end, counted as each "
        "stopped workspace's price per hour x the time from its stop to the demo's end",
        "  (a floor: left running, they would go on costing that much every hour after):",
        *counted,
    ]
    if unpriced:
        lines.append(f"  not counted, no price known: {', '.join(unpriced)}")
    return lines


# ---------------------------------------------------------------- the run


async def run_demo(seconds: float, state_dir: Path | None = None) -> int:
    """Run the demo for `seconds` (0: until Ctrl-C); 130 after Ctrl-C, as `warden run`."""
    if state_dir is not None and (state_dir / STORE_FILE).exists():
        print(
            f"warden: {state_dir} already holds a demo's state; give a new folder "
            "(or remove that one)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    configure_logging(level="warning", fmt="console")
    async with simulators(seconds) as sims, _state_dir(state_dir) as state:
        REDACTOR.add(sims.secrets)
        settings = Settings(policy_path=[DEMO_POLICIES], state_dir=state, admin_bind="127.0.0.1:0")
        policies = load_policy_set(settings, sims.env)
        _print_header(policies, state, kept=state_dir is not None, seconds=seconds)
        printer = DemoPrinter(policies, synced_at=sims.synced_at)
        started = utc_now()
        async with Daemon(settings, policies=policies, env=sims.env, on_cycle=printer) as daemon:
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                if seconds > 0:
                    tg.start_soon(_set_after, stop, seconds)
                tg.start_soon(printer.say_when_quiet)
                tg.start_soon(_owner_returns, sims, printer, (seconds or DEFAULT_SECONDS) / 4)
                await daemon.serve(stop)  # returns at the timer, or at SIGINT/SIGTERM
                tg.cancel_scope.cancel()
            ended = utc_now()
            assert daemon.store is not None
            rows = await daemon.store.spend_by_day(ended.date())
        print("\n" + spend_table(totals(rows, by="provider"), day=ended.date(), by="provider"))
        print("\n" + "\n".join(printer.summary(started=started, ended=ended)))
        print("\n" + "\n".join(next_steps(state, kept=state_dir is not None, printer=printer)))
    interrupted = daemon.stopped_by == signal.SIGINT
    print("\ndemo interrupted." if interrupted else "\ndemo finished.", file=sys.stderr)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _print_header(policies: PolicySet, state: Path, *, kept: bool, seconds: float) -> None:
    print("Warden demo: simulated Coder, Strongly.ai, Mage Pro, Mage Cloud and agent-run")
    print(f"policies: {', '.join(p.name for p in policies.policies)} (from {DEMO_POLICIES})")
    print(f"budgets: {', '.join(b.name for b in policies.budgets)}")
    where = "kept" if kept else "a temporary folder, removed at the end; --state-dir DIR keeps it"
    length = f"{format_duration(timedelta(seconds=seconds))}" if seconds > 0 else "until Ctrl-C"
    print(f"state: {state} ({where}). Runs {length}; Ctrl-C ends it sooner.\n")


async def _set_after(event: anyio.Event, seconds: float) -> None:
    await anyio.sleep(seconds)
    event.set()


async def _owner_returns(sims: Simulators, printer: DemoPrinter, after: float) -> None:
    """judy uses her warned workspace again: the next cycle clears the warning."""
    await anyio.sleep(after)
    sims.coder.set_last_used(sims.returning, utc_now())
    ref = WorkspaceId("coder-demo", sims.returning)
    printer.say([line("(PLATFORM)", f"{ref} (judy-back, judy)", "judy is back: she uses it now")])


def next_steps(state: Path, *, kept: bool, printer: DemoPrinter) -> list[str]:
    """The exact commands that read the demo's state afterwards, or how to keep it."""
    if not kept:
        return [
            "the state was in a temporary folder and is removed now; "
            "`warden demo --state-dir DIR` keeps it for `warden explain` and `warden spend`."
        ]
    warden = _command()
    env = f"WARDEN_STATE_DIR={shlex.quote(str(state))}"
    policies = f"WARDEN_POLICY_PATH={shlex.quote(str(DEMO_POLICIES))}"
    lines = [f"the state is kept in {state}; read it with:"]
    example = printer.example()
    if example is not None:
        ws, what = example
        lines.append(
            f"  {env} {policies} {warden} explain {shlex.quote(str(ws.id))}"
            f"   # {ws.name}: why it was {what}"
        )
    lines += [
        f"  {env} {warden} spend --by provider",
        f"  {env} {warden} events --limit 20",
    ]
    return lines


def _command() -> str:
    """How this `warden` was started, so that the printed commands run as they are."""
    if Path(sys.argv[0]).name == "warden":
        return shlex.quote(sys.argv[0])
    return f"{shlex.quote(sys.executable)} -m warden"


@asynccontextmanager
async def _state_dir(given: Path | None) -> AsyncIterator[Path]:
    """The folder the demo's state lives in: `given` (kept), or a temporary one."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="warden-demo-") as directory:
        yield Path(directory)
