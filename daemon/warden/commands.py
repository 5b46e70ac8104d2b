"""The long-running CLI commands: run, plan, explain, migrate (cli.py parses, this does)."""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import datetime
from typing import Any

import structlog

from warden.clock import utc_now
from warden.daemon import Daemon, load_policy_set
from warden.exits import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK
from warden.explain import explanation, explanation_lines
from warden.model import WorkspaceId
from warden.outbox_view import event_json_line, event_line, follow, latest
from warden.policy.loader import PolicyError, PolicySet, load_policies
from warden.providers.registry import capability_names
from warden.report import plan_lines
from warden.runtime import tune_garbage_collector
from warden.sdnotify import Notifier
from warden.settings import Settings, policy_environment
from warden.store import Store, StoredEvent, deliveries

log = structlog.get_logger(__name__)


def _policies_or_exit(settings: Settings) -> PolicySet | None:
    try:
        return load_policy_set(settings)
    except PolicyError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return None


async def run_daemon(settings: Settings, once: bool) -> int:
    """`warden run`: refuse to start on bad policies (exit 2); else run until SIGTERM
    (exit 0) or Ctrl-C (130), either way after the in-flight actions are recorded."""
    policies = _policies_or_exit(settings)
    if policies is None:
        return EXIT_BAD_INPUT
    tune_garbage_collector()
    async with Daemon(settings, policies=policies, notifier=Notifier()) as daemon:
        if once:
            results = await daemon.run_cycle()
            assert daemon.dispatcher is not None
            await daemon.dispatcher.deliver_once()  # one round of delivery; the rest waits
            return EXIT_OK if all(r.error is None for r in results) else EXIT_FAILURE
        await daemon.serve()
    return EXIT_INTERRUPTED if daemon.stopped_by == signal.SIGINT else EXIT_OK


async def plan(settings: Settings) -> int:
    """`warden plan`: one cycle of every provider with writes off. It observes, loads the
    memory, decides (budgets included) and shows what the rails would hold; it acts on
    nothing and writes nothing."""
    policies = _policies_or_exit(settings)
    if policies is None:
        return EXIT_BAD_INPUT
    tune_garbage_collector()
    failures = 0
    async with Daemon(settings, policies=policies) as daemon:
        for name in daemon.providers:
            result = await daemon.plan(name)
            if result.observation is None:
                print(f"{name}: cannot observe: {result.error}")
                failures += 1
                continue
            for line in plan_lines(result):
                print(line)
    return EXIT_FAILURE if failures else EXIT_OK


async def explain(settings: Settings, reference: str, as_json: bool) -> int:
    """`warden explain`: what Warden knows of a workspace and why it did what it did."""
    try:
        ws_id = WorkspaceId.parse(reference)
    except ValueError as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
    policies = _policies_to_read(settings)
    now = utc_now()
    store = await Store.open(settings.effective_database_url)
    try:
        report = await explanation(store, ws_id, policies, now=now)
    finally:
        await store.aclose()
    if report is None:
        print(f"{ws_id}: Warden has not seen this workspace", file=sys.stderr)
        return EXIT_FAILURE
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print("\n".join(explanation_lines(report, now=now)))
    return EXIT_OK


def _policies_to_read(settings: Settings) -> PolicySet | None:
    """The policy files, to tell which policies and budgets cover a workspace. Nothing
    is sent anywhere, so an unset secret is no problem (a placeholder stands in, as in
    `warden validate --no-secrets`); files with problems leave that part out, said once."""
    try:
        return load_policies(
            settings.policy_path,
            env=policy_environment(os.environ),
            capabilities=capability_names(),
            unset_ok=True,
        )
    except PolicyError as e:
        print(
            f"warden: the policy files have {len(e.problems)} problem(s) (`warden validate` "
            "lists them): the policies and budgets covering it are left out",
            file=sys.stderr,
        )
        return None


async def migrate(settings: Settings) -> int:
    """`warden migrate`: bring the schema to the newest revision and say which it is."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.effective_database_url)
    try:
        await store.migrate()
        print(f"schema at revision {await store.current_revision()}")
    finally:
        await store.aclose()
    return EXIT_OK


async def holds(settings: Settings, args: Any) -> int:
    """`warden holds [release PROVIDER POLICY]`: what the surge rail holds, and letting it go."""
    from warden.clock import utc_now
    from warden.holds import list_holds, release_hold

    store = await Store.open(settings.effective_database_url)
    try:
        await store.migrate()
        if args.holds_command == "release":
            by = f"cli: {args.by}" if args.by else "cli"
            if not await release_hold(store, args.provider, args.policy, by=by, now=utc_now()):
                print(f"no hold in force on {args.provider} for {args.policy}", file=sys.stderr)
                return EXIT_FAILURE
            print(f"released: {args.provider} {args.policy} (by {by})")
            return EXIT_OK
        found = await list_holds(store)
    finally:
        await store.aclose()
    if args.json:
        print(json.dumps(found, indent=2))
    elif not found:
        print("none")
    for hold in [] if args.json else found:
        released = f", released by {hold['released_by']}" if hold["released_by"] else ""
        print(
            f"{hold['provider']}\t{hold['policy']}\tsince {hold['since']}\t{hold['reason']}{released}"
        )
    return EXIT_OK


async def events(settings: Settings, args: Any) -> int:
    """`warden events [--follow] | tail | dead-letters | replay | enable`: the outbox
    and its delivery."""
    store = await Store.open(settings.effective_database_url)
    try:
        await store.migrate()
        return await _EVENTS_COMMANDS[args.events_command or "list"](store, args)
    finally:
        await store.aclose()


async def _list_events(store: Store, args: Any) -> int:
    """The newest `--limit` events, oldest first; with `--follow`, then every new one."""
    found = await latest(store, limit=args.limit, types=args.type)
    for event in found.events:
        _print_event(event, args.json)
    if args.follow:
        return await _follow(store, args, after=found.cursor)
    if not found.events and not args.json:
        print("no events" + (f" of type {', '.join(args.type)}" if args.type else ""))
    return EXIT_OK


async def _tail(store: Store, args: Any) -> int:
    """`warden events tail`: the same as `warden events --follow`."""
    args.follow = True
    return await _list_events(store, args)


async def _follow(store: Store, args: Any, *, after: int) -> int:
    """Print new events until Ctrl-C (KeyboardInterrupt: the CLI exits 130)."""
    async for event in follow(store, after=after, types=args.type):
        _print_event(event, args.json)
    return EXIT_OK  # follow() never ends on its own


def _print_event(event: StoredEvent, as_json: bool) -> None:
    print(event_json_line(event) if as_json else event_line(event), flush=True)


async def _dead_letters(store: Store, args: Any) -> int:
    letters = await deliveries.dead_letters(store, sink=args.sink)
    for letter in letters:
        print(
            f"{letter.sink}\t#{letter.seq}\t{letter.event_id}\t{letter.type}\t"
            f"{letter.subject}\tattempts={letter.attempts}"
        )
    if not letters:
        print("none" + (f" for sink {args.sink!r}" if args.sink else ""))
    return EXIT_OK


async def _replay(store: Store, args: Any) -> int:
    count = await deliveries.replay(store, now=utc_now(), sink=args.sink, event_ids=args.event)
    print(f"queued again: {count}")
    return EXIT_OK


async def _enable(store: Store, args: Any) -> int:
    if not await deliveries.enable_sink(store, args.sink):
        print(f"sink {args.sink!r} is not disabled", file=sys.stderr)
        return EXIT_FAILURE
    print(f"sink {args.sink!r} enabled")
    return EXIT_OK


_EVENTS_COMMANDS = {
    "list": _list_events,
    "tail": _tail,
    "dead-letters": _dead_letters,
    "replay": _replay,
    "enable": _enable,
}


async def spend(settings: Settings, args: Any) -> int:
    """`warden spend`: the ledger and the spend records (pushed or from feeds) for one
    UTC day, by workspace, owner or provider."""
    from datetime import UTC, timedelta
    from datetime import time as midnight

    from warden.clock import utc_now
    from warden.spend.report import feed_rows, spend_json, spend_table, totals

    day = args.day or utc_now().date()
    start = datetime.combine(day, midnight(), UTC)
    store = await Store.open(settings.effective_database_url)
    try:
        await store.migrate()
        records = await store.spend_records_between(start, start + timedelta(days=1))
        rows = totals([*await store.spend_by_day(day), *feed_rows(records, day=day)], by=args.by)
    finally:
        await store.aclose()
    print(
        spend_json(rows, day=day, by=args.by)
        if args.json
        else spend_table(rows, day=day, by=args.by)
    )
    return EXIT_OK


async def savings(settings: Settings, args: Any) -> int:
    """`warden savings`: what Warden's stops avoided, by scope and period (UTC days)."""
    from warden.spend.savings import default_first_day, savings_json, savings_of, savings_text

    policies = _policies_or_exit(settings)
    if policies is None:
        return EXIT_BAD_INPUT
    now = utc_now()
    last = args.last or now.date()
    first = args.first or default_first_day(args.per, last)
    if first > last:
        print("warden: --from must be a day before --to", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = {
        "by": args.by,
        "per": args.per,
        "first": first,
        "last": last,
        "horizon": policies.settings.savings_horizon,
    }
    store = await Store.open(settings.effective_database_url)
    try:
        await store.migrate()
        rows = await savings_of(store, now=now, **report)
    finally:
        await store.aclose()
    print(
        json.dumps(savings_json(rows, **report), indent=2)
        if args.json
        else savings_text(rows, **report)
    )
    return EXIT_OK


async def keep_alive(settings: Settings, args: Any) -> int:
    """`warden keep-alive PROVIDER/ID [--for 4h] [--link]`: in use until a time."""
    from warden.daemon import snooze_links
    from warden.events.keepalive import (
        KeepAliveLinks,
        NothingToKeepAlive,
        duration_of,
        keep_alive,
        kept_alive_json,
    )
    from warden.store import UnknownWorkspace

    try:
        ws_id = WorkspaceId.parse(args.workspace)
    except ValueError as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.link:
        links = snooze_links(settings)
        if links is None:
            print(
                "warden: a keep-alive link needs WARDEN_SNOOZE_SECRET and WARDEN_PUBLIC_URL",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        print(KeepAliveLinks.beside(links).make(ws_id, now=utc_now()))
        return EXIT_OK
    policies = _policies_or_exit(settings)
    if policies is None:
        return EXIT_BAD_INPUT
    store = await Store.open(settings.effective_database_url)
    try:
        await store.migrate()
        done = await keep_alive(
            store,
            ws_id,
            duration=duration_of(args.duration),
            policies=policies.policies,
            now=utc_now(),
            by="cli",
        )
    except (UnknownWorkspace, NothingToKeepAlive) as e:
        print(f"warden: {e}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await store.aclose()
    answer = kept_alive_json(done)
    held = ", ".join(f"{name} until {until}" for name, until in answer["held"].items())
    print(f"{ws_id} kept alive until {answer['kept_alive_until']} ({held})")
    return EXIT_OK
