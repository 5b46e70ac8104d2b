"""The `warden` command as users run it: exit codes, file:line:col problems, real runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from warden.cli import main
from warden.sim.coder import CoderSim

TOKEN = "cli-test-coder-token-0123456789"
WARDEN = [sys.executable, "-m", "warden.cli"]
POLICIES = """
version: 1
providers:
  coder: {type: coder, url: "%(url)s", token: "${CODER_TOKEN}"}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    warn_before: 15m
"""


def test_validate_prints_file_line_column_and_exits_2(tmp_path: Path, capsys):
    bad = tmp_path / "dev.yaml"
    bad.write_text("version: 1\npolicies:\n  - name: idle\n    when:\n      idle_for: two hours\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert (
        f'{bad}:5:17: policies[0].when.idle_for: expected a duration such as "2h", got "two hours"'
        in err
    )


def test_validate_accepts_a_good_directory(tmp_path: Path, capsys):
    (tmp_path / "a.yaml").write_text(
        "version: 1\npolicies:\n  - {name: idle, when: {idle_for: 2h}}\n"
    )
    assert main(["validate", str(tmp_path)]) == 0
    assert "ok: 1 policies" in capsys.readouterr().out


def test_schema_is_json_that_knows_every_policy_key(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"idle_for", "running_for", "gpu_below", "for"} <= set(
        schema["$defs"]["When"]["properties"]
    )


def test_no_command_is_bad_input(capsys):
    assert main([]) == 2


@dataclass
class Deployment:
    sim: CoderSim
    env: dict[str, str]
    idle: str


@pytest.fixture
async def deployment(tmp_path: Path, clock) -> AsyncIterator[Deployment]:
    sim = CoderSim(token=TOKEN)
    from warden.clock import utc_now

    now = utc_now()
    idle = sim.add_workspace(
        name="idle",
        owner="alice",
        last_used_at=now - timedelta(hours=3),
        started_at=now - timedelta(hours=4),
    )
    sim.add_workspace(
        name="busy", owner="bob", last_used_at=now, started_at=now - timedelta(hours=1)
    )
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        policy = tmp_path / "policies.yaml"
        policy.write_text(POLICIES % {"url": str(server.make_url("/"))})
        env = {
            "PATH": os.environ["PATH"],
            "CODER_TOKEN": TOKEN,
            "WARDEN_POLICY_PATH": str(policy),
            "WARDEN_STATE_DIR": str(tmp_path / "state"),
            "WARDEN_LOG_FORMAT": "json",
        }
        yield Deployment(sim, env, idle)


async def warden(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *WARDEN, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_plan_prints_what_would_happen_and_acts_on_nothing(deployment: Deployment):
    code, out, _ = await warden("plan", env=deployment.env)
    assert code == 0
    assert "WARN" in out
    assert "(idle, alice)" in out
    assert "(busy, bob)" not in out
    assert not any(method == "POST" for method, _ in deployment.sim.calls)


async def test_run_once_warns_then_explain_shows_the_warning(deployment: Deployment):
    code, _, err = await warden("run", "--once", env=deployment.env)
    assert code == 0, err
    assert TOKEN not in err
    code, out, _ = await warden("explain", f"coder/{deployment.idle}", "--json", env=deployment.env)
    assert code == 0
    report = json.loads(out)
    assert report["policies"] == ["idle-dev"]
    assert list(report["memory"]["warnings"]) == ["idle-dev"]
    assert report["decisions"][0]["kind"] == "warn"


async def test_run_refuses_to_start_on_bad_policies(deployment: Deployment, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npolicies:\n  - {name: x, when: {idle_for: soon}}\n")
    code, _, err = await warden("run", env=deployment.env | {"WARDEN_POLICY_PATH": str(bad)})
    assert code == 2
    assert f"{bad}:3:" in err


async def test_explain_of_an_unknown_workspace_exits_1(deployment: Deployment):
    await warden("migrate", env=deployment.env)
    code, _, err = await warden("explain", "coder/nope", env=deployment.env)
    assert code == 1
    assert "has not seen" in err


def test_a_malformed_webhook_secret_is_refused_at_its_line(tmp_path: Path, capsys):
    bad = tmp_path / "sinks.yaml"
    bad.write_text(
        "version: 1\nsinks:\n  audit:\n    type: webhook\n    url: http://127.0.0.1:9/h\n    secret: not-a-secret\n"
    )
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6:13: sinks.audit.secret:" in err
    assert "whsec_" in err
    assert "not-a-secret" not in err  # a secret is never echoed, even a malformed one
