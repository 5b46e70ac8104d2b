"""decide(): tables of situations and their expected decisions, and its properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import memory, policy, rules, workspace
from warden.model import DecisionKind, State, Verb, Warning
from warden.policy.decide import decide

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def kinds(decisions):
    return [(d.kind, d.verb) for d in decisions]


@pytest.mark.parametrize(
    ("idle", "expected"),
    [
        (timedelta(minutes=30), []),
        (2 * H - 16 * M, []),
        (2 * H - 15 * M, [(DecisionKind.WARN, Verb.STOP)]),
        (3 * H, [(DecisionKind.WARN, Verb.STOP)]),
    ],
)
def test_idle_workspace_is_warned_within_warn_before_of_its_limit(idle, expected):
    """No warning until warn_before ahead of the idle limit, then a warning."""
    p = policy(warn_before="15m")
    ws = workspace(now=NOW, idle=idle)
    assert kinds(decide(rules(p), [ws], {}, now=NOW, since=None)) == expected


def test_warning_due_at_gives_the_owner_the_whole_warn_before():
    p = policy(warn_before="15m")
    ws = workspace(now=NOW, idle=5 * H)
    [warn] = decide(rules(p), [ws], {}, now=NOW, since=None)
    assert warn.due_at == NOW + 15 * M
    assert warn.facts["idle_for"] == "5h"


def test_warned_workspace_is_stopped_at_its_deadline_not_before():
    p = policy(warn_before="15m")
    warned = memory(
        warnings={"p": Warning(policy="p", verb=Verb.STOP, warned_at=NOW, due_at=NOW + 15 * M)}
    )
    early = NOW + 14 * M
    due = NOW + 15 * M
    assert (
        decide(
            rules(p),
            [workspace(now=early, idle=3 * H)],
            {workspace(now=NOW).id: warned},
            now=early,
            since=NOW,
        )
        == []
    )
    [act] = decide(
        rules(p),
        [workspace(now=due, idle=3 * H)],
        {workspace(now=NOW).id: warned},
        now=due,
        since=early,
    )
    assert (act.kind, act.verb) == (DecisionKind.ACT, Verb.STOP)


def test_activity_after_a_warning_clears_it():
    p = policy(warn_before="15m")
    ws = workspace(now=NOW, idle=5 * M)
    warned = memory(
        warnings={"p": Warning(policy="p", verb=Verb.STOP, warned_at=NOW - M, due_at=NOW + 14 * M)}
    )
    [clear] = decide(rules(p), [ws], {ws.id: warned}, now=NOW, since=NOW - M)
    assert clear.kind is DecisionKind.CLEAR


def test_without_warn_before_an_idle_workspace_is_stopped_at_once():
    [act] = decide(rules(policy()), [workspace(now=NOW, idle=3 * H)], {}, now=NOW, since=None)
    assert (act.kind, act.verb) == (DecisionKind.ACT, Verb.STOP)


def test_snooze_defers_the_stop_until_it_ends():
    p = policy(warn_before="15m")
    ws = workspace(now=NOW, idle=3 * H)
    mem = memory(
        warnings={"p": Warning(policy="p", verb=Verb.STOP, warned_at=NOW - H, due_at=NOW - 45 * M)},
        snoozed_until=NOW + 30 * M,
    )
    [skip] = decide(rules(p), [ws], {ws.id: mem}, now=NOW, since=NOW - M)
    assert skip.kind is DecisionKind.SKIP
    assert "snoozed" in skip.reason
    later = NOW + 30 * M
    [act] = decide(rules(p), [workspace(now=later, idle=4 * H)], {ws.id: mem}, now=later, since=NOW)
    assert act.kind is DecisionKind.ACT


def test_unknown_activity_never_stops_and_says_why_when_a_warning_is_pending():
    p = policy(warn_before="15m")
    ws = workspace(now=NOW, idle=None)
    assert decide(rules(p), [ws], {}, now=NOW, since=None) == []
    warned = memory(
        warnings={"p": Warning(policy="p", verb=Verb.STOP, warned_at=NOW - H, due_at=NOW - M)}
    )
    [skip] = decide(rules(p), [ws], {ws.id: warned}, now=NOW, since=NOW - M)
    assert skip.kind is DecisionKind.SKIP
    assert "unknown" in skip.reason


def test_busy_workspace_is_not_idle_whatever_its_last_activity():
    ws = workspace(now=NOW, idle=10 * H, busy=True)
    assert decide(rules(policy()), [ws], {}, now=NOW, since=None) == []


def test_stale_facts_never_stop():
    ws = workspace(now=NOW - H, idle=10 * H)
    [skip] = decide(rules(policy()), [ws], {}, now=NOW, since=None)
    assert skip.kind is DecisionKind.SKIP
    assert "stale" in skip.reason


@pytest.mark.parametrize(
    "state", [State.STOPPED, State.STOPPING, State.STARTING, State.FAILED, State.UNKNOWN]
)
def test_only_running_workspaces_are_stopped(state):
    ws = workspace(now=NOW, idle=10 * H, state=state)
    assert decide(rules(policy()), [ws], {}, now=NOW, since=None) == []


def test_a_workspace_in_a_build_is_left_alone():
    ws = workspace(now=NOW, idle=10 * H, transitioning=True)
    assert decide(rules(policy()), [ws], {}, now=NOW, since=None) == []


def test_excluded_workspace_is_left_alone():
    p = policy(exclude={"template": ["protected"]})
    ws = workspace(now=NOW, idle=10 * H, template="protected")
    assert decide(rules(p), [ws], {}, now=NOW, since=None) == []


def test_lifetime_extends_first_then_warns_then_stops():
    p = policy(when={"running_for": "12h"}, extend={"by": "2h", "max": 2}, warn_before="30m")
    ws = workspace(now=NOW, running=12 * H + M, deadline=NOW + M, max_deadline=NOW + 20 * H)
    [ext] = decide(rules(p), [ws], {}, now=NOW, since=None)
    assert (ext.kind, ext.verb, ext.extend_to) == (DecisionKind.ACT, Verb.EXTEND, NOW + M + 2 * H)
    once = memory(extensions_used={"p": 1})
    assert decide(rules(p), [ws], {ws.id: once}, now=NOW, since=None) == []
    twice = memory(extensions_used={"p": 2})
    at_16h = workspace(now=NOW, running=16 * H - 30 * M)
    [warn] = decide(rules(p), [at_16h], {ws.id: twice}, now=NOW, since=None)
    assert (warn.kind, warn.due_at) == (DecisionKind.WARN, NOW + 30 * M)


def test_extension_stops_at_the_platforms_max_deadline():
    p = policy(when={"running_for": "12h"}, extend={"by": "2h", "max": 2})
    ws = workspace(now=NOW, running=13 * H, deadline=NOW, max_deadline=NOW + H)
    [ext] = decide(rules(p), [ws], {}, now=NOW, since=None)
    assert ext.extend_to == NOW + H


def test_lifetime_counts_from_the_earliest_known_start():
    p = policy(when={"running_for": "12h"})
    ws = workspace(now=NOW, running=None)
    assert decide(rules(p), [ws], {}, now=NOW, since=None) == []
    remembered = memory(running_since=NOW - 13 * H)
    [act] = decide(rules(p), [ws], {ws.id: remembered}, now=NOW, since=None)
    assert act.verb is Verb.STOP


def test_extension_beats_a_stop_from_another_policy():
    idle = policy(name="idle")
    life = policy(name="life", when={"running_for": "1h"}, extend={"by": "1h", "max": 1})
    ws = workspace(now=NOW, idle=3 * H, running=2 * H)
    decisions = decide(rules(idle, life), [ws], {}, now=NOW, since=None)
    assert [(d.policy, d.verb) for d in decisions] == [("life", Verb.EXTEND)]


def test_notify_tells_once_per_episode():
    p = policy(do="notify")
    ws = workspace(now=NOW, idle=3 * H)
    [note] = decide(rules(p), [ws], {}, now=NOW, since=None)
    assert (note.kind, note.verb) == (DecisionKind.ACT, Verb.NOTIFY)
    told = memory(warnings={"p": Warning(policy="p", verb=Verb.NOTIFY, warned_at=NOW, due_at=NOW)})
    assert decide(rules(p), [ws], {ws.id: told}, now=NOW, since=NOW) == []


def test_dry_run_marks_every_decision():
    [act] = decide(
        rules(policy(), dry_run=True), [workspace(now=NOW, idle=3 * H)], {}, now=NOW, since=None
    )
    assert act.dry_run


# ---------------------------------------------------------------- schedules

OFFICE = {
    "office": {"timezone": "Europe/Berlin", "open": ["Mon-Fri 08:00-19:00"], "holidays": "DE"}
}
CLOSING = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # 19:00 in Berlin
OPENING = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # 08:00 in Berlin


def test_schedule_stops_running_workspaces_at_closing():
    p = policy(when=None, schedule="office")
    ws = workspace(now=CLOSING + M, idle=0 * H)
    [act] = decide(rules(p, schedules=OFFICE), [ws], {}, now=CLOSING + M, since=CLOSING - M)
    assert (act.kind, act.verb) == (DecisionKind.ACT, Verb.STOP)


def test_schedule_leaves_a_workspace_started_after_closing_alone():
    p = policy(when=None, schedule="office")
    later = CLOSING + 2 * H
    ws = workspace(now=later, idle=0 * H)
    assert decide(rules(p, schedules=OFFICE), [ws], {}, now=later, since=later - M) == []


def test_schedule_warns_before_closing():
    p = policy(when=None, schedule="office", warn_before="15m")
    at = CLOSING - 10 * M
    [warn] = decide(rules(p, schedules=OFFICE), [workspace(now=at)], {}, now=at, since=at - M)
    assert (warn.kind, warn.due_at) == (DecisionKind.WARN, CLOSING)


def test_schedule_resumes_at_opening_only_what_it_stopped():
    p = policy(when=None, schedule="office")
    ws = workspace(now=OPENING + M, state=State.STOPPED, running=None)
    ours = memory(stopped_by="p", stopped_at=CLOSING)
    theirs = memory(stopped_by=None)
    [act] = decide(
        rules(p, schedules=OFFICE), [ws], {ws.id: ours}, now=OPENING + M, since=OPENING - M
    )
    assert act.verb is Verb.RESUME
    assert (
        decide(
            rules(p, schedules=OFFICE), [ws], {ws.id: theirs}, now=OPENING + M, since=OPENING - M
        )
        == []
    )


def test_first_cycle_after_start_acts_on_no_edge():
    p = policy(when=None, schedule="office")
    ws = workspace(now=CLOSING + M)
    assert decide(rules(p, schedules=OFFICE), [ws], {}, now=CLOSING + M, since=None) == []


# ---------------------------------------------------------------- properties

durations = st.one_of(
    st.none(), st.integers(min_value=0, max_value=72 * 3600).map(lambda s: timedelta(seconds=s))
)
states = st.sampled_from(list(State))


@st.composite
def situations(draw):
    idle = draw(durations)
    running = draw(durations)
    state = draw(states)
    snoozed = draw(st.booleans())
    warned = draw(st.booleans())
    mem = memory(
        snoozed_until=NOW + H if snoozed else None,
        warnings={"p": Warning(policy="p", verb=Verb.STOP, warned_at=NOW - H, due_at=NOW - M)}
        if warned
        else {},
    )
    return workspace(now=NOW, idle=idle, running=running, state=state), mem


POLICIES = [
    policy(warn_before="15m"),
    policy(),
    policy(when={"running_for": "4h"}),
    policy(when={"running_for": "4h"}, extend={"by": "1h", "max": 1}),
]


def stops(decisions):
    return [d for d in decisions if d.kind is DecisionKind.ACT and d.verb is Verb.STOP]


@settings(max_examples=300, deadline=None)
@given(situations(), st.sampled_from(POLICIES))
def test_stopped_unknown_or_snoozed_workspaces_are_never_stopped(situation, p):
    ws, mem = situation
    decisions = decide(rules(p), [ws], {ws.id: mem}, now=NOW, since=NOW - M)
    if ws.state is not State.RUNNING or mem.snoozed_until is not None:
        assert stops(decisions) == []
    if p.when.idle_for is not None and ws.last_active_at is None:
        assert stops(decisions) == []


@settings(max_examples=200, deadline=None)
@given(situations(), st.sampled_from(POLICIES))
def test_excluded_workspaces_are_never_touched(situation, p):
    ws, mem = situation
    excluding = p.model_copy(update={"exclude": [policy(match={"owner": "alice"}).match]})
    assert decide(rules(excluding), [ws], {ws.id: mem}, now=NOW, since=NOW - M) == []


@settings(max_examples=200, deadline=None)
@given(situations(), st.sampled_from(POLICIES))
def test_decisions_are_deterministic(situation, p):
    ws, mem = situation
    first = decide(rules(p), [ws], {ws.id: mem}, now=NOW, since=NOW - M)
    second = decide(rules(p), [ws], {ws.id: mem}, now=NOW, since=NOW - M)
    assert first == second


def test_a_busy_workspace_is_held_at_closing_and_at_its_lifetime():
    """Never kill real work: running pipelines hold a stop from any policy."""
    closing = policy(when=None, schedule="office")
    busy = workspace(now=CLOSING + M, busy=True)
    [held] = decide(
        rules(closing, schedules=OFFICE), [busy], {}, now=CLOSING + M, since=CLOSING - M
    )
    assert held.kind is DecisionKind.SKIP
    assert "busy" in held.reason
    lifetime = policy(when={"running_for": "1h"})
    [held] = decide(
        rules(lifetime), [workspace(now=NOW, running=2 * H, busy=True)], {}, now=NOW, since=None
    )
    assert held.kind is DecisionKind.SKIP


# ---------------------------------------------------------------- utilisation

from decimal import Decimal  # noqa: E402  (kept beside the tests that use it)

from warden.policy.decide import time_below  # noqa: E402


def samples(*values, end=NOW, every=M):
    """Samples one `every` apart, the last at `end`; None for a poll that said nothing."""
    count = len(values)
    return [
        (end - (count - 1 - i) * every, None if v is None else Decimal(v))
        for i, v in enumerate(values)
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1] * 31, 30 * M),  # thirty minutes under, known all along
        ([50] + [1] * 10, 9 * M),  # counted from the first low sample after the busy one
        ([1] * 10, None),  # too few samples to know about thirty minutes
        ([1] * 20 + [None] + [1] * 10, None),  # an unknown poll cuts the window
        ([1] * 30 + [None], None),  # the newest poll said nothing
        ([1] * 30 + [90], timedelta(0)),  # busy now
    ],
)
def test_time_below_needs_a_whole_known_window(values, expected):
    assert time_below(samples(*values), Decimal(5), now=NOW, max_gap=5 * M, need=30 * M) == expected


def test_a_gap_in_the_samples_makes_the_window_unknown():
    gappy = samples(*[1] * 10, end=NOW - 25 * M) + samples(*[1] * 15)
    assert time_below(gappy, Decimal(5), now=NOW, max_gap=5 * M, need=30 * M) is None


def test_idle_gpu_is_stopped_after_its_window_and_a_busy_gpu_is_not():
    p = policy(when={"gpu_below": "5%", "for": "30m"})
    ws = workspace(now=NOW, idle=None)
    idle_gpu = memory(samples={"gpu": samples(*[2] * 31)})
    busy_gpu = memory(samples={"gpu": samples(*[2] * 30 + [80])})
    [act] = decide(rules(p), [ws], {ws.id: idle_gpu}, now=NOW, since=None)
    assert (act.kind, act.verb, act.facts["gpu_below"]) == (DecisionKind.ACT, Verb.STOP, "30m")
    assert decide(rules(p), [ws], {ws.id: busy_gpu}, now=NOW, since=None) == []


def test_next_due_is_the_earliest_warning_deadline_or_limit_crossing():
    from warden.policy.decide import next_due

    idle = policy(name="idle", warn_before="15m")
    life = policy(name="life", when={"running_for": "12h"})
    young = workspace("young", now=NOW, idle=H, running=11 * H)
    warned = workspace("warned", now=NOW, idle=0 * H, running=H)
    mem = {
        warned.id: memory(
            warnings={
                "idle": Warning(policy="idle", verb=Verb.STOP, warned_at=NOW, due_at=NOW + 5 * M)
            }
        )
    }
    # young: idle warns at 1h45m, its lifetime ends in 1h; warned: due in 5 minutes
    assert next_due(rules(idle, life), [young, warned], mem, now=NOW) == NOW + 5 * M
    assert next_due(rules(idle, life), [young], {}, now=NOW) == NOW + 45 * M
    snoozed = {warned.id: memory(warnings=mem[warned.id].warnings, snoozed_until=NOW + H)}
    assert next_due(rules(idle), [warned], snoozed, now=NOW) == NOW + H  # the snooze ends first


# ---------------------------------------------------------------- lifecycle settings

HOOKS = {"pre_start_script_path": "pre.sh", "post_start": {"command": ["echo"], "hook_path": "h"}}
AS_WRITTEN = {"enable_auto_termination": True, "max_idle_seconds": 7200}
UNSET = object()  # the platform did not report the config at all


def configured(config, *, state=State.RUNNING, **fields):
    facts = {} if config is UNSET else {"lifecycle_config": config}
    return workspace("m-1", now=NOW, state=state, provider="mage", facts=facts, **fields)


def keeper(**fields):
    from warden.policy.models import Policy

    return Policy.model_validate({"name": "keep", "lifecycle": {"max_idle": "2h"}} | fields)


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (configured(UNSET), []),  # unknown: never patched on a guess
        (configured({"termination_policy": AS_WRITTEN} | HOOKS), []),  # as written: no patch
        (configured(None), [(DecisionKind.ACT, Verb.CONFIGURE)]),  # Mage's null: known, empty
        (configured(HOOKS), [(DecisionKind.ACT, Verb.CONFIGURE)]),
        (configured(HOOKS, state=State.STOPPED), [(DecisionKind.ACT, Verb.CONFIGURE)]),
        (configured(HOOKS, state=State.STARTING, transitioning=True), []),
        (configured(HOOKS, state=State.UNKNOWN), []),
        (configured(HOOKS, observed_at=NOW - H), [(DecisionKind.SKIP, None)]),  # stale
    ],
)
def test_a_lifecycle_policy_configures_only_a_known_differing_config(snapshot, expected):
    assert kinds(decide(rules(keeper()), [snapshot], {}, now=NOW, since=None)) == expected


def test_the_configure_decision_carries_the_whole_merged_config():
    current = {"termination_policy": {"enable_auto_termination": False, "extra": 1}} | HOOKS
    [act] = decide(rules(keeper()), [configured(current)], {}, now=NOW, since=None)
    assert (
        act.facts["lifecycle_config"] == {"termination_policy": AS_WRITTEN | {"extra": 1}} | HOOKS
    )
    assert act.facts["wanted"] == AS_WRITTEN
    assert act.facts["current"] == {"enable_auto_termination": False, "extra": 1}
    assert act.reason == (
        "lifecycle settings differ: enable_auto_termination false → true, "
        "max_idle_seconds unset → 7200"
    )


def test_an_excluded_workspace_keeps_its_lifecycle_config():
    p = keeper(exclude={"name": ["m-*"]})
    assert decide(rules(p), [configured(HOOKS)], {}, now=NOW, since=None) == []


def test_a_lifecycle_write_passes_beside_a_stop_and_is_marked_dry_run_where_asked():
    stop = policy(name="idle", when={"idle_for": "1h"})
    ws = configured(HOOKS, idle=3 * H)
    both = decide(rules(stop, keeper(dry_run=True)), [ws], {}, now=NOW, since=None)
    assert [(d.verb, d.dry_run) for d in both] == [(Verb.STOP, False), (Verb.CONFIGURE, True)]
