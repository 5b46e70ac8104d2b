"""Budgets: validation at load, local-time windows, standings and thresholds, enforcement
and its undo at the reset. Pure functions, called directly."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.factories import memory, policy, rules, workspace
from warden.budget.enforce import Enforcement, combine, enforcement, undo
from warden.budget.evaluate import Charge, Standing, standings
from warden.budget.state import Acted, WindowState
from warden.budget.windows import window_at
from warden.model import Decision, DecisionKind, State, Verb, Workspace, WorkspaceId
from warden.policy.loader import PolicyError, PolicySet, load_policies
from warden.policy.models import BudgetPolicy, GlobalSettings
from warden.providers.registry import capability_names
from warden.rails import RailInputs, apply_rails

NOW = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)  # Tuesday 12:00 in Berlin; 12h of the day left
HEAD = """\
providers:
  coder-prod: {type: coder, url: "http://127.0.0.1:3000", token: t}
pricing:
  coder-prod: {usd_per_credit: 0.10}
sinks:
  team-chat: {type: log}
  oncall: {type: log}
"""  # 7 lines: a budget's first line below is line 8


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths in messages are as given: tests give them relative to tmp_path."""
    monkeypatch.chdir(tmp_path)


def write(text: str, head: str = HEAD) -> Path:
    path = Path("b.yaml")
    path.write_text(head + textwrap.dedent(text), encoding="utf-8")
    return path


def load(path: Path) -> PolicySet:
    return load_policies([path], env={}, capabilities=capability_names())


def problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        load(path)
    return [str(p) for p in raised.value.problems]


def budget(**fields: Any) -> BudgetPolicy:
    base: dict[str, Any] = {
        "name": "team-daily",
        "match": {"provider": "coder-prod"},
        "budget": {"per": "owner", "window": "day", "limit_usd": 50, "timezone": "Europe/Berlin"},
        "thresholds": [{"at": "100%", "do": "stop"}],
    }
    return BudgetPolicy.model_validate(base | fields)


def ws(native: str, *, now: datetime = NOW, **fields: Any) -> Workspace:
    return workspace(native, now=now, **fields)


def charge(native: str, amount: str, owner: str = "alice") -> Charge:
    return Charge(WorkspaceId("coder-prod", native), owner, Decimal(amount))


def stand(
    b: BudgetPolicy,
    charges: list[Charge],
    snapshots: list[Workspace],
    *,
    rates: dict[str, str] | None = None,
    states: dict[str, WindowState] | None = None,
    now: datetime = NOW,
) -> list[Standing]:
    return standings(
        b,
        charges,
        {w.id: w for w in snapshots},
        {WorkspaceId("coder-prod", k): Decimal(v) for k, v in (rates or {}).items()},
        states or {},
        now=now,
    )


def spent_by_scope(result: list[Standing]) -> dict[str, Decimal]:
    return {s.scope: s.spent for s in result}


def window_state(scope: str = "alice", **fields: Any) -> WindowState:
    window = window_at("day", "Europe/Berlin", NOW)
    return WindowState(
        budget="team-daily",
        scope=scope,
        window_start=window.start,
        window_end=window.end,
        **fields,
    )


def acts(decisions: list[Decision]) -> list[tuple[str, Verb | None]]:
    return [(d.workspace.native, d.verb) for d in decisions if d.kind is DecisionKind.ACT]


# ---------------------------------------------------------------- validation


def test_an_unknown_scope_is_refused_at_its_value():
    path = write("""\
        budgets:
          - name: b
            budget: {per: team, window: day, limit_usd: 50}
            thresholds: [{at: 80%}]
        """)
    assert problems(path) == [
        'b.yaml:10:19: budgets[0].budget.per: unknown scope "team": expected one of workspace, '
        "owner, project, template, provider, all, or label:KEY"
    ]


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_a_limit_of_zero_or_less_is_refused(limit: str):
    path = write(f"""\
        budgets:
          - name: b
            budget: {{per: owner, window: day, limit_usd: {limit}}}
            thresholds: [{{at: 80%}}]
        """)
    assert problems(path) == [
        f"b.yaml:10:50: budgets[0].budget.limit_usd: expected greater than 0, got {limit}"
    ]


def test_thresholds_out_of_order_are_reported_at_the_later_share():
    path = write("""\
        budgets:
          - name: b
            budget: {per: owner, window: day, limit_usd: 50}
            thresholds:
              - at: 100%
              - at: 80%
        """)
    assert problems(path) == [
        "b.yaml:13:13: budgets[0].thresholds[1].at: thresholds out of order: 80% comes after 100% "
        "(list them from the lowest share up)"
    ]


def test_a_forecast_threshold_may_not_stop():
    path = write("""\
        budgets:
          - name: b
            budget: {per: owner, window: day, limit_usd: 50}
            thresholds:
              - {at: 100%, forecast: true, do: stop}
        """)
    assert problems(path) == [
        "b.yaml:12:9: budgets[0].thresholds[0]: a forecast threshold only notifies: acting on "
        "a projection would stop work that may never cross"
    ]


def test_do_throttle_needs_its_throttle_limits():
    path = write("""\
        budgets:
          - name: b
            budget: {per: owner, window: day, limit_usd: 50}
            thresholds:
              - {at: 100%, do: throttle}
        """)
    assert problems(path) == [
        "b.yaml:12:9: budgets[0].thresholds[0]: `do: throttle` goes with "
        "`throttle: {max_concurrent_runs: ...}`"
    ]


def test_an_unknown_sink_in_a_thresholds_notify_is_refused_at_the_name():
    path = write("""\
        budgets:
          - name: b
            budget: {per: owner, window: day, limit_usd: 50}
            thresholds:
              - {at: 100%, notify: [pager]}
        """)
    assert problems(path) == [
        'b.yaml:12:29: budgets[0].thresholds[0].notify[0]: unknown sink "pager" '
        "(expected one of: oncall, team-chat)"
    ]


def test_a_budget_counting_a_provider_without_pricing_is_refused():
    head = HEAD.replace("pricing:\n  coder-prod: {usd_per_credit: 0.10}\n", "")
    path = write(
        """\
        budgets:
          - name: b
            budget: {per: owner, window: day, limit_usd: 50}
            thresholds: [{at: 80%}]
        """,
        head,
    )
    assert problems(path) == [
        'b.yaml:8:5: budgets[0].budget: budget counts provider "coder-prod", which has no pricing entry and no '
        "spend feed: its spend would be missing"
    ]


def test_a_kill_switch_on_a_provider_that_has_none_is_refused_at_do():
    path = write("""\
        budgets:
          - name: b
            match: {provider: coder-prod}
            budget: {per: all, window: day, limit_usd: 50}
            thresholds:
              - {at: 100%, do: kill_switch}
        """)
    assert problems(path) == [
        'b.yaml:13:24: budgets[0].thresholds[0].do: provider "coder-prod" (coder) cannot kill_switch'
    ]


def test_a_budget_may_not_take_a_policys_name():
    path = write("""\
        policies:
          - name: team-daily
            when: {idle_for: 2h}
        budgets:
          - name: team-daily
            budget: {per: all, window: day, limit_usd: 50}
            thresholds: [{at: 100%}]
        """)
    assert problems(path) == [
        "b.yaml:12:11: duplicate policy name 'team-daily' (first defined at b.yaml:9)"
    ]


def test_the_readme_budget_loads():
    path = write("""\
        budgets:
          - name: team-daily
            match: {provider: coder-prod}
            budget: {per: owner, window: day, limit_usd: 50, timezone: Europe/Berlin}
            thresholds:
              - {at: 80%, notify: [team-chat]}
              - {at: 100%, forecast: true, notify: [oncall]}
              - {at: 100%, do: stop, notify: [oncall]}
        """)
    [loaded] = load(path).budgets
    assert loaded.budget.per == "owner"
    assert loaded.budget.limit_usd == Decimal(50)
    assert loaded.budget.timezone == "Europe/Berlin"
    assert [(t.at, t.forecast, t.do) for t in loaded.thresholds] == [
        (Decimal(80), False, "notify"),
        (Decimal(100), True, "notify"),
        (Decimal(100), False, "stop"),
    ]
    assert loaded.notify == ["oncall", "team-chat"]


# ---------------------------------------------------------------- windows


def test_a_berlin_day_is_23_hours_when_the_clocks_spring_forward():
    window = window_at("day", "Europe/Berlin", datetime(2026, 3, 29, 12, 0, tzinfo=UTC))
    assert window.start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert window.end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    assert window.end - window.start == timedelta(hours=23)


def test_a_berlin_day_is_25_hours_when_the_clocks_fall_back():
    window = window_at("day", "Europe/Berlin", datetime(2026, 10, 25, 12, 0, tzinfo=UTC))
    assert window.start == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    assert window.end == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)
    assert window.end - window.start == timedelta(hours=25)


def test_a_week_starts_on_monday_at_local_midnight():
    window = window_at("week", "Europe/Berlin", datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    assert (window.first_day, window.last_day) == (date(2026, 11, 23), date(2026, 11, 29))
    assert window.start == datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    assert window.end == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)


def test_half_past_midnight_on_monday_in_berlin_is_already_the_next_week():
    monday_0030 = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)  # still Sunday in UTC
    assert window_at("week", "Europe/Berlin", monday_0030).first_day == date(2026, 11, 30)


def test_a_december_window_ends_at_local_midnight_on_the_first_of_january():
    window = window_at("month", "Europe/Berlin", datetime(2026, 12, 15, 12, 0, tzinfo=UTC))
    assert window.start == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert window.end == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert (window.first_day, window.last_day) == (date(2026, 12, 1), date(2026, 12, 31))


def test_a_kolkata_day_starts_at_half_past_six_utc():
    window = window_at("day", "Asia/Kolkata", datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    assert window.start == datetime(2026, 5, 31, 18, 30, tzinfo=UTC)
    assert window.end == datetime(2026, 6, 1, 18, 30, tzinfo=UTC)


# ---------------------------------------------------------------- evaluate


def test_spend_per_owner_sums_every_charge_of_the_owners_workspaces():
    snapshots = [ws("a1"), ws("a2"), ws("b1", owner="bob")]
    charges = [charge("a1", "10"), charge("a1", "2.5"), charge("a2", "15.5"), charge("b1", "7")]
    result = stand(budget(), charges, snapshots)
    assert spent_by_scope(result) == {"alice": Decimal("28.0"), "bob": Decimal(7)}
    assert result[0].spenders[0] == (WorkspaceId("coder-prod", "a2"), Decimal("15.5"))


def test_a_workspace_the_budget_excludes_does_not_count():
    b = budget(exclude={"template": "gpu"})
    snapshots = [ws("a1"), ws("g1", template="gpu")]
    result = stand(b, [charge("a1", "10"), charge("g1", "40")], snapshots)
    assert spent_by_scope(result) == {"alice": Decimal(10)}


def test_a_label_scope_groups_by_the_labels_value_and_skips_unlabelled_workspaces():
    b = budget(budget={"per": "label:team", "window": "day", "limit_usd": 50})
    snapshots = [
        ws("m1", labels={"team": "ml"}),
        ws("m2", owner="bob", labels={"team": "ml"}),
        ws("w1", labels={"team": "web"}),
        ws("none"),
    ]
    charges = [charge("m1", "5"), charge("m2", "6", "bob"), charge("w1", "3"), charge("none", "9")]
    assert spent_by_scope(stand(b, charges, snapshots)) == {
        "ml": Decimal(11),
        "web": Decimal(3),
    }


def test_a_threshold_fires_once_per_window_even_when_spend_dips_and_rises_again():
    b = budget(thresholds=[{"at": "80%"}, {"at": "100%", "do": "stop"}])
    state = window_state()
    seen = []
    for amount in ("45", "30", "45"):  # 90%, 60%, 90%
        [standing] = stand(b, [charge("a1", amount)], [ws("a1")], states={"alice": state})
        seen.append(standing.fired)
        state = state.firing(standing.fired)
    assert seen == [(0,), (), ()]


def test_a_threshold_already_fired_in_the_stored_state_does_not_fire_again():
    b = budget(thresholds=[{"at": "80%"}, {"at": "100%", "do": "stop"}])
    states = {"alice": window_state(fired=(0,))}
    [standing] = stand(b, [charge("a1", "55")], [ws("a1")], states=states)
    assert standing.fired == (1,)


def test_a_forecast_fires_when_spend_plus_burn_until_the_reset_reaches_the_share():
    b = budget(thresholds=[{"at": "100%", "forecast": True}])
    # 12h left at $2/h: 26 + 24 = 50 reaches the limit; 25.99 + 24 does not
    [reaching] = stand(b, [charge("a1", "26")], [ws("a1")], rates={"a1": "2"})
    [short] = stand(b, [charge("a1", "25.99")], [ws("a1")], rates={"a1": "2"})
    assert reaching.fired == (0,)
    assert short.fired == ()


def test_a_stopped_workspace_adds_no_burn_to_the_forecast():
    b = budget(thresholds=[{"at": "100%", "forecast": True}])
    stopped = ws("a1", state=State.STOPPED)
    [standing] = stand(b, [charge("a1", "26")], [stopped], rates={"a1": "2"})
    assert standing.burn_per_hour == 0
    assert standing.fired == ()


def test_a_charge_for_a_workspace_no_snapshot_describes_counts_toward_its_owner():
    result = stand(budget(), [charge("gone", "12", owner="carol")], [ws("a1")])
    assert spent_by_scope(result) == {"carol": Decimal(12)}


# ---------------------------------------------------------------- enforce


def spent_alice() -> list[Standing]:
    """Alice has spent $60 of $50 on three running workspaces: a1 $10, a2 $30, a3 $20."""
    snapshots = [ws("a1"), ws("a2"), ws("a3")]
    charges = [charge("a1", "10"), charge("a2", "30"), charge("a3", "20")]
    return stand(budget(), charges, snapshots)


def test_a_spent_budget_stops_the_largest_spenders_first():
    enforced = enforcement(spent_alice(), [ws("a1"), ws("a2"), ws("a3")])
    assert acts(enforced.decisions) == [("a2", Verb.STOP), ("a3", Verb.STOP), ("a1", Verb.STOP)]
    assert {d.policy for d in enforced.decisions} == {"team-daily"}


def test_a_busy_or_transitioning_workspace_is_not_stopped():
    snapshots = [ws("a1"), ws("a2", busy=True), ws("a3", transitioning=True)]
    enforced = enforcement(spent_alice(), snapshots)
    assert acts(enforced.decisions) == [("a1", Verb.STOP)]


def test_a_budget_under_its_limit_does_nothing():
    [standing] = stand(budget(), [charge("a1", "49.99")], [ws("a1")])
    enforced = enforcement([standing], [ws("a1")])
    assert enforced.decisions == []
    assert enforced.held == {}


def resume(native: str, policy_name: str = "office") -> Decision:
    return Decision(
        kind=DecisionKind.ACT,
        workspace=WorkspaceId("coder-prod", native),
        policy=policy_name,
        verb=Verb.RESUME,
    )


def test_combine_drops_a_schedules_resume_of_a_workspace_a_spent_budget_holds():
    snapshots = [ws("a1", state=State.STOPPED), ws("b1", owner="bob", state=State.STOPPED)]
    standing = stand(budget(), [charge("a1", "60")], snapshots)
    enforced = enforcement(standing, snapshots)
    combined = paced(combine([resume("a1"), resume("b1")], enforced, []), 10)
    assert acts(combined) == [("b1", Verb.RESUME)]


def test_the_pace_lets_budget_stops_through_largest_first():
    enforced = enforcement(spent_alice(), [ws("a1"), ws("a2"), ws("a3")])
    assert acts(paced(combine([], enforced, []), 2)) == [("a2", Verb.STOP), ("a3", Verb.STOP)]


def test_a_policys_own_stop_uses_up_the_pace_first():
    enforced = enforcement(spent_alice(), [ws("a1"), ws("a2"), ws("a3")])
    own = Decision(
        kind=DecisionKind.ACT,
        workspace=WorkspaceId("coder-prod", "x1"),
        policy="idle-dev",
        verb=Verb.STOP,
    )
    assert acts(paced(combine([own], enforced, []), 2)) == [
        ("x1", Verb.STOP),
        ("a2", Verb.STOP),
    ]


def test_combine_adds_no_budget_stop_for_a_workspace_a_policy_already_stops():
    enforced = enforcement(spent_alice(), [ws("a1"), ws("a2"), ws("a3")])
    own = Decision(
        kind=DecisionKind.ACT,
        workspace=WorkspaceId("coder-prod", "a2"),
        policy="idle-dev",
        verb=Verb.STOP,
    )
    combined = paced(combine([own], enforced, []), 10)
    assert [(d.workspace.native, d.policy) for d in combined] == [
        ("a2", "idle-dev"),
        ("a3", "team-daily"),
        ("a1", "team-daily"),
    ]


def test_a_dry_run_budgets_stops_are_not_trimmed_by_the_pace():
    standing = stand(budget(dry_run=True), [charge("a1", "30"), charge("a2", "30")], [])
    enforced = enforcement(standing, [ws("a1"), ws("a2")])
    combined = paced(combine([], enforced, []), 0)
    assert [(d.workspace.native, d.dry_run) for d in combined] == [("a1", True), ("a2", True)]


# ---------------------------------------------------------------- undo at the reset

AFTER_RESET = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # Wednesday 09:00 in Berlin
MIDNIGHT_RESET = datetime(2026, 11, 24, 23, 5, tzinfo=UTC)  # Wednesday 00:05 in Berlin
OFFICE = {"office": {"timezone": "Europe/Berlin", "open": ["Mon-Fri 08:00-19:00"]}}


def ended(*natives: str) -> WindowState:
    acted = tuple(Acted(WorkspaceId("coder-prod", n), Verb.STOP) for n in natives)
    return window_state(fired=(0,), acted=acted)


def undone(state: WindowState, snapshots: list[Workspace], stopped_by: dict[str, str], **kw: Any):
    at = kw.pop("now", AFTER_RESET)
    return undo(
        [state],
        {w.id: w for w in snapshots},
        {WorkspaceId("coder-prod", n): memory(stopped_by=by) for n, by in stopped_by.items()},
        kw.pop("rules", rules()),
        now=at,
    )


def test_undo_resumes_only_what_is_still_stopped_by_the_budget():
    snapshots = [
        ws("a1", state=State.STOPPED, now=AFTER_RESET),
        ws("a2", state=State.STOPPED, now=AFTER_RESET),
    ]
    result = undone(ended("a1", "a2"), snapshots, {"a1": "team-daily", "a2": "idle-dev"})
    assert acts(result.decisions) == [("a1", Verb.RESUME)]
    assert result.decisions[0].policy == "team-daily"


def test_undo_settles_a_workspace_that_is_running_again():
    result = undone(ended("a1"), [ws("a1", now=AFTER_RESET)], {"a1": "team-daily"})
    assert result.decisions == []
    assert [acted.workspace.native for _key, acted in result.settled] == ["a1"]


def test_undo_waits_while_a_covering_schedule_is_closed():
    office = rules(policy(name="office", when=None, schedule="office"), schedules=OFFICE)
    snapshots = [ws("a1", state=State.STOPPED, now=MIDNIGHT_RESET)]
    state = ended("a1")
    at_midnight = undone(state, snapshots, {"a1": "team-daily"}, rules=office, now=MIDNIGHT_RESET)
    at_opening = undone(state, snapshots, {"a1": "team-daily"}, rules=office, now=AFTER_RESET)
    assert at_midnight.decisions == []
    assert at_midnight.settled == []
    assert acts(at_opening.decisions) == [("a1", Verb.RESUME)]


def test_an_empty_enforcement_leaves_the_policies_decisions_alone():
    decisions = [resume("a1"), resume("b1")]
    assert combine(decisions, Enforcement(), []) == decisions


def test_the_largest_spender_goes_first_across_scope_values():
    snapshots = [ws("a1"), ws("b1", owner="bob")]
    charges = [charge("a1", "51"), charge("b1", "500", owner="bob")]
    enforced = enforcement(stand(budget(), charges, snapshots), snapshots)
    assert acts(paced(combine([], enforced, []), 1)) == [("b1", Verb.STOP)]


def test_a_policys_dry_run_stop_does_not_cancel_a_budgets_real_stop():
    enforced = enforcement(spent_alice(), [ws("a2")])
    planned = Decision(
        kind=DecisionKind.ACT,
        workspace=WorkspaceId("coder-prod", "a2"),
        policy="idle-dev",
        verb=Verb.STOP,
        dry_run=True,
    )
    combined = paced(combine([planned], enforced, []), 10)
    assert [(d.policy, d.dry_run) for d in combined] == [("idle-dev", True), ("team-daily", False)]


def test_a_throttle_that_lowers_nothing_is_refused():
    path = write("""\
        budgets:
          - name: b
            budget: {per: owner, window: day, limit_usd: 50}
            thresholds:
              - {at: 100%, do: throttle, throttle: {max_concurrent_runs: null}}
        """)
    [problem] = problems(path)
    assert "expected at least one of max_concurrent_runs" in problem
    assert problem.startswith("b.yaml:12:")


def paced(decisions: list[Decision], pace: int) -> list[Decision]:
    """What the rails let through this cycle at a pace of `pace` stops per provider."""
    inputs = RailInputs(provider="coder-prod", running=100, budget_names=frozenset({"team-daily"}))
    settings = GlobalSettings(max_actions_per_cycle=pace)
    return apply_rails(decisions, inputs, settings, {}, now=NOW).go
