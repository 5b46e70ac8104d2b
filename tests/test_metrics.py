"""Warden's metrics: what each named event moves, the exposition, and the alert rules."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.admin_rig import AdminRig, admin_rig
from warden.clock import ManualClock
from warden.metrics import Metrics
from warden.model import State

ALERTS = Path(__file__).parent.parent / "deploy" / "prometheus" / "warden-alerts.yaml"


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def scraped(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def exported_names(metrics: Metrics) -> set[str]:
    return {s.name for family in metrics.registry.collect() for s in family.samples}


# ---------------------------------------------------------------- the named events


def test_each_daemon_has_its_own_registry_and_the_global_one_stays_clean():
    first, second = Metrics(), Metrics()
    first.poll_finished("coder", seconds=1.0, ok=True)
    assert value(first, "warden_polls_total", provider="coder", outcome="ok") == 1
    assert value(second, "warden_polls_total", provider="coder", outcome="ok") is None
    assert REGISTRY.get_sample_value("warden_polls_total", {"provider": "coder"}) is None


def test_build_info_names_the_version():
    assert value(Metrics(version="9.9.9"), "warden_build_info", version="9.9.9") == 1


def test_a_poll_counts_by_outcome_and_observes_its_duration():
    metrics = Metrics()
    metrics.poll_finished("coder", seconds=0.3, ok=True)
    metrics.poll_finished("coder", seconds=12.0, ok=False)
    assert value(metrics, "warden_polls_total", provider="coder", outcome="ok") == 1
    assert value(metrics, "warden_polls_total", provider="coder", outcome="failed") == 1
    assert value(metrics, "warden_poll_duration_seconds_count", provider="coder") == 2
    assert value(metrics, "warden_poll_duration_seconds_sum", provider="coder") == 12.3
    assert value(metrics, "warden_poll_duration_seconds_bucket", provider="coder", le="0.5") == 1


def test_workspaces_by_state_fill_missing_states_with_zero():
    metrics = Metrics()
    metrics.workspaces_seen("coder", {"running": 3, "stopped": 1})
    metrics.workspaces_seen("coder", {"stopped": 4})
    assert value(metrics, "warden_workspaces", provider="coder", state="running") == 0
    assert value(metrics, "warden_workspaces", provider="coder", state="stopped") == 4
    assert {
        s.labels["state"]
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name == "warden_workspaces"
    } == {str(s) for s in State}


def test_providers_polled_sets_times_and_forgets_providers_no_longer_configured(
    clock: ManualClock,
):
    metrics = Metrics()
    metrics.workspaces_seen("old", {"running": 1})
    metrics.providers_polled({"old": clock(), "coder": clock()}, unreachable=["coder"])
    assert value(metrics, "warden_last_successful_poll_timestamp_seconds", provider="coder") == (
        clock().timestamp()
    )
    assert value(metrics, "warden_provider_reachable", provider="coder") == 0
    metrics.providers_polled({"coder": None})
    assert value(metrics, "warden_provider_reachable", provider="coder") == 1
    assert value(metrics, "warden_last_successful_poll_timestamp_seconds", provider="old") is None
    assert value(metrics, "warden_workspaces", provider="old", state="running") is None


def test_a_provider_never_polled_successfully_has_no_last_success():
    metrics = Metrics()
    metrics.providers_polled({"coder": None}, unreachable=["coder"])
    assert value(metrics, "warden_last_successful_poll_timestamp_seconds", provider="coder") is None


def test_decisions_and_actions_count_by_policy_and_outcome():
    metrics = Metrics()
    metrics.decision("idle-dev", "warn")
    metrics.action("idle-dev", "stop", "succeeded", latency_after_due=timedelta(seconds=40))
    metrics.action("idle-dev", "stop", "failed")
    assert value(metrics, "warden_decisions_total", policy="idle-dev", kind="warn") == 1
    labels = {"policy": "idle-dev", "verb": "stop"}
    assert value(metrics, "warden_actions_total", outcome="succeeded", **labels) == 1
    assert value(metrics, "warden_actions_total", outcome="failed", **labels) == 1
    assert value(metrics, "warden_action_delay_after_due_seconds_count", verb="stop") == 1
    assert value(metrics, "warden_action_delay_after_due_seconds_sum", verb="stop") == 40


def test_api_errors_without_an_http_status_are_labelled_none():
    metrics = Metrics()
    metrics.api_error("coder", 429)
    metrics.api_error("coder", None)
    assert value(metrics, "warden_provider_api_errors_total", provider="coder", status="429") == 1
    assert value(metrics, "warden_provider_api_errors_total", provider="coder", status="none") == 1


def test_outbox_depth_is_per_sink_and_drops_sinks_no_longer_named():
    metrics = Metrics()
    metrics.outbox({"chat": 3, "oncall": 1})
    metrics.outbox({"chat": 0})
    assert value(metrics, "warden_outbox_pending_events", sink="chat") == 0
    assert value(metrics, "warden_outbox_pending_events", sink="oncall") is None


def test_deliveries_failures_and_dead_letters_count_per_sink():
    metrics = Metrics()
    metrics.delivered("chat")
    metrics.delivery_failed("chat")
    metrics.delivery_failed("chat")
    metrics.dead_lettered("chat")
    assert value(metrics, "warden_deliveries_total", sink="chat") == 1
    assert value(metrics, "warden_delivery_failures_total", sink="chat") == 2
    assert value(metrics, "warden_dead_lettered_events_total", sink="chat") == 1


def test_spend_and_budget_use_are_gauges_per_scope():
    metrics = Metrics()
    metrics.budget_standing("team-daily", "alice", Decimal("12.50"), Decimal(50))
    assert value(metrics, "warden_spend_usd", policy="team-daily", scope="alice") == 12.5
    assert value(metrics, "warden_budget_used_ratio", policy="team-daily", scope="alice") == 0.25


def test_a_rejected_reload_counts_and_lowers_the_last_reload_gauge():
    metrics = Metrics()
    assert value(metrics, "warden_policy_last_reload_ok") == 1
    metrics.policy_reload(ok=False)
    assert value(metrics, "warden_policy_reloads_total", outcome="rejected") == 1
    assert value(metrics, "warden_policy_last_reload_ok") == 0
    metrics.policy_reload(ok=True)
    assert value(metrics, "warden_policy_last_reload_ok") == 1


def test_render_speaks_openmetrics_when_asked():
    body, content_type = Metrics().render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    body, content_type = Metrics().render(None)
    assert content_type.startswith("text/plain")
    assert b"warden_build_info" in body


# ---------------------------------------------------------------- /metrics on a real daemon


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    async with admin_rig(tmp_path, clock) as rig:
        yield rig


async def test_metrics_show_the_last_successful_poll_after_a_cycle(rig: AdminRig):
    _, before, _ = await rig.call("GET", "/metrics", token=None)
    assert ("warden_provider_reachable", frozenset({("provider", "coder")})) in scraped(before)
    key = ("warden_last_successful_poll_timestamp_seconds", frozenset({("provider", "coder")}))
    assert key not in scraped(before)
    await rig.daemon.run_cycle()
    _, after, _ = await rig.call("GET", "/metrics", token=None)
    assert scraped(after)[key] == rig.clock().timestamp()


async def test_metrics_show_an_unreachable_provider(rig: AdminRig):
    rig.sim.fail_next("GET", "/api/v2/workspaces", status=503)
    await rig.daemon.run_cycle()
    _, text, _ = await rig.call("GET", "/metrics", token=None)
    assert scraped(text)[("warden_provider_reachable", frozenset({("provider", "coder")}))] == 0


async def test_metrics_show_the_dry_run_switch(rig: AdminRig):
    await rig.call("POST", "/v1/dry-run", json={"enabled": True})
    status, text, headers = await rig.call("GET", "/metrics", token=None)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert scraped(text)[("warden_dry_run", frozenset())] == 1


# ---------------------------------------------------------------- the sample alert rules


def alert_rules() -> list[dict]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_file_has_the_prometheus_rule_file_shape():
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names))
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert isinstance(rule["alert"], str)
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
            assert isinstance(rule["expr"], str)
            assert rule["expr"].count("(") == rule["expr"].count(")")
            assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
            assert rule["labels"]["severity"] in {"page", "ticket", "info"}
            assert {"summary", "description"} <= set(rule["annotations"])


def test_alert_rules_use_only_metrics_warden_exports(clock: ManualClock):
    metrics = Metrics()
    # Give every labelled metric a series, so that it shows up in the registry.
    metrics.poll_finished("p", seconds=1, ok=True)
    metrics.workspaces_seen("p", {})
    metrics.providers_polled({"p": clock()})
    metrics.decision("x", "warn")
    metrics.action("x", "stop", "failed", latency_after_due=timedelta(0))
    metrics.api_error("p", 500)
    metrics.outbox({"s": 0})
    metrics.delivered("s")
    metrics.delivery_failed("s")
    metrics.dead_lettered("s")
    metrics.budget_standing("x", "all", Decimal(0), Decimal(1))
    metrics.policy_reload(ok=True)
    exported = exported_names(metrics) | {"up"}
    for rule in alert_rules():
        used = set(re.findall(r"\b(?:warden_[a-z_]+|up)\b", rule["expr"]))
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)


# ---------------------------------------------------------------- the operations guide

GUIDE = Path(__file__).parent.parent / "docs" / "operations.md"


def test_the_operations_guide_describes_every_metric_and_no_other():
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    documented = set(re.findall(r"(?m)^\| `(warden_[a-z_]+)` \|", GUIDE.read_text()))
    assert documented == exported


def test_the_operations_guide_lists_every_sample_alert():
    documented = set(re.findall(r"(?m)^\| `(Warden[A-Za-z]+)` \|", GUIDE.read_text()))
    assert documented == {rule["alert"] for rule in alert_rules()}
