"""The `warden` command: run, validate, plan, explain, schema, events, spend, savings,
keep-alive, migrate, demo.

Exit codes (warden.exits): 0 success; 1 a runtime failure (store or platform
unreachable); 2 bad input (a policy file with problems, bad arguments); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import structlog
from pydantic import ValidationError

from warden import __version__
from warden.errors import WardenError
from warden.exits import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK
from warden.logging import REDACTOR, configure_logging
from warden.policy.loader import PolicyError, load_policies
from warden.providers.registry import capability_names
from warden.settings import Settings, policy_environment
from warden.spend.savings import PERIODS, SCOPES

log = structlog.get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BadSettings as e:
        for problem in e.problems:
            print(f"warden: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WardenError as e:  # a store or platform that cannot be reached: say so, plainly
        print(f"warden: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `warden schema | head`
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warden", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"warden {__version__}")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--once", action="store_true", help="one cycle of every provider, then exit")
    run.add_argument("--dry-run", action="store_true", help="decide and tell, never act")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check policy files; print file:line:col problems")
    validate.add_argument("paths", nargs="+", type=Path)
    validate.add_argument(
        "--no-secrets",
        action="store_true",
        help="lint without the secrets: an unset ${VAR} gets a placeholder of the right shape",
    )
    validate.set_defaults(func=cmd_validate)

    plan = sub.add_parser("plan", help="observe once and print what would happen; act on nothing")
    plan.set_defaults(func=cmd_plan)

    explain = sub.add_parser(
        "explain", help="the facts and policies behind a workspace's decisions"
    )
    explain.add_argument("workspace", help="PROVIDER/ID, as in events")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(func=cmd_explain)

    schema = sub.add_parser("schema", help="print the JSON Schema of policy files (or events)")
    schema.add_argument("what", nargs="?", choices=["policies", "events"], default="policies")
    schema.set_defaults(func=cmd_schema)

    _add_events_parser(sub)

    spend = sub.add_parser("spend", help="spend by workspace, owner or provider, for a day")
    spend.add_argument("--by", choices=["workspace", "owner", "provider"], default="workspace")
    spend.add_argument("--day", type=_day, help="a UTC day, YYYY-MM-DD (default: today)")
    spend.add_argument("--json", action="store_true")
    spend.set_defaults(func=cmd_spend)

    savings = sub.add_parser(
        "savings", help="what Warden's stops avoided, by owner, policy or provider, per period"
    )
    savings.add_argument("--by", choices=SCOPES, default="owner")
    savings.add_argument("--per", choices=PERIODS, default="day")
    savings.add_argument("--from", dest="first", type=_day, help="a UTC day, YYYY-MM-DD")
    savings.add_argument("--to", dest="last", type=_day, help="a UTC day (default: today)")
    savings.add_argument("--json", action="store_true")
    savings.set_defaults(func=cmd_savings)

    keep = sub.add_parser(
        "keep-alive", help="mark a workspace in use until a time: idle rules hold their stop"
    )
    keep.add_argument("workspace", help="PROVIDER/ID, as in events")
    keep.add_argument(
        "--for",
        dest="duration",
        type=_duration,
        help="how long: 90m, 4h, 3d (default: the longest its policies allow)",
    )
    keep.add_argument(
        "--link",
        action="store_true",
        help="print the owner's keep-alive link instead (needs WARDEN_SNOOZE_SECRET and "
        "WARDEN_PUBLIC_URL); a job can call it with curl -X POST",
    )
    keep.set_defaults(func=cmd_keep_alive)

    holds = sub.add_parser("holds", help="the safety rails' holds in force; release one")
    holds_sub = holds.add_subparsers(dest="holds_command")
    release = holds_sub.add_parser("release", help="let a held policy act on a provider")
    release.add_argument("provider")
    release.add_argument("policy")
    release.add_argument("--by", help="who releases it, for the record")
    holds.add_argument("--json", action="store_true")
    holds.set_defaults(func=cmd_holds)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(func=cmd_migrate)

    demo = sub.add_parser("demo", help="run against built-in simulators with demo policies")
    demo.add_argument("--seconds", type=float, default=75.0, help="how long to run (0: forever)")
    demo.add_argument(
        "--state-dir",
        type=Path,
        help="keep the state here, for `warden explain` and `warden spend` after "
        "(default: a temporary folder, removed at the end)",
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def _add_events_parser(sub: Any) -> None:
    """`warden events`: the outbox, newest last; `tail`; dead letters, replay, sinks."""
    events = sub.add_parser(
        "events",
        help="list the event outbox (newest last), follow it; dead letters, replay, sinks",
    )
    _add_listing_options(events, default=argparse.SUPPRESS)
    events.add_argument(
        "-f", "--follow", action="store_true", help="then print new events as they are written"
    )
    events.set_defaults(func=cmd_events, limit=20, type=[], json=False, events_command=None)
    events_sub = events.add_subparsers(dest="events_command", metavar="COMMAND")
    tail = events_sub.add_parser("tail", help="the latest events, then new ones (= --follow)")
    _add_listing_options(tail, default=argparse.SUPPRESS)
    dead = events_sub.add_parser("dead-letters", help="list events a sink gave up on")
    dead.add_argument("--sink", help="only this sink's")
    replay = events_sub.add_parser("replay", help="queue dead-lettered events again")
    replay.add_argument("--sink", help="only this sink's dead letters")
    replay.add_argument("--event", action="append", default=[], help="only this event id")
    enable = events_sub.add_parser("enable", help="switch on a sink a 410 Gone disabled")
    enable.add_argument("sink")


def _add_listing_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    # SUPPRESS: a subcommand's unset option leaves the value given before it alone.
    parser.add_argument(
        "--limit", type=_positive, default=default, help="the newest N events (default 20)"
    )
    parser.add_argument(
        "--type",
        action="append",
        default=default,
        metavar="TYPE",
        help="only events of this type, e.g. warden.workspace.stopped (repeatable)",
    )
    parser.add_argument("--json", action="store_true", default=default, help="JSON lines")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, got {text!r}")
    return int(text)


class BadSettings(Exception):
    """WARDEN_* variables that do not parse: bad input (exit 2), never a traceback."""

    def __init__(self, error: ValidationError) -> None:
        # Each problem names the variable and what is wrong, never the value: it may be
        # a secret.
        self.problems = [
            f"WARDEN_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        ]
        super().__init__("; ".join(self.problems))


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = Settings()
    except ValidationError as e:
        raise BadSettings(e) from None
    REDACTOR.add(settings.secret_values())
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    if getattr(args, "dry_run", False):
        settings = settings.model_copy(update={"dry_run": True})
    return settings


def cmd_validate(args: argparse.Namespace) -> int:
    env = policy_environment(os.environ)
    try:
        policies = load_policies(
            args.paths, env=env, capabilities=capability_names(), unset_ok=args.no_secrets
        )
    except PolicyError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"ok: {len(policies.policies)} policies, {len(policies.budgets)} budgets, "
        f"{len(policies.providers)} providers, {len(policies.schedules)} schedules, "
        f"{len(policies.sinks)} sinks"
    )
    if policies.unset:
        print(f"unset, checked with placeholders: {', '.join(policies.unset)}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    if args.what == "events":
        from warden.events.schemas import all_schemas

        print(json.dumps(all_schemas(), indent=2, sort_keys=True))
        return EXIT_OK
    from warden.policy.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from warden.commands import run_daemon

    return anyio.run(run_daemon, _settings(args), args.once)


def cmd_plan(args: argparse.Namespace) -> int:
    from warden.commands import plan

    return anyio.run(plan, _settings(args))


def cmd_explain(args: argparse.Namespace) -> int:
    from warden.commands import explain

    return anyio.run(explain, _settings(args), args.workspace, args.json)


def cmd_migrate(args: argparse.Namespace) -> int:
    from warden.commands import migrate

    return anyio.run(migrate, _settings(args))


def cmd_events(args: argparse.Namespace) -> int:
    from warden.commands import events

    return anyio.run(events, _settings(args), args)


def cmd_holds(args: argparse.Namespace) -> int:
    from warden.commands import holds

    return anyio.run(holds, _settings(args), args)


def cmd_spend(args: argparse.Namespace) -> int:
    from warden.commands import spend

    return anyio.run(spend, _settings(args), args)


def cmd_savings(args: argparse.Namespace) -> int:
    from warden.commands import savings

    return anyio.run(savings, _settings(args), args)


def cmd_keep_alive(args: argparse.Namespace) -> int:
    from warden.commands import keep_alive

    return anyio.run(keep_alive, _settings(args), args)


def _duration(text: str) -> str:
    from warden.events.keepalive import duration_of
    from warden.events.snooze import SnoozeRefused

    try:
        duration_of(text)
    except SnoozeRefused as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a day such as 2026-11-24, got {text!r}"
        ) from None


def cmd_demo(args: argparse.Namespace) -> int:
    from warden.demo import run_demo

    return anyio.run(run_demo, args.seconds, args.state_dir)


if __name__ == "__main__":
    raise SystemExit(main())
