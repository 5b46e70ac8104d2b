"""An action a warning announced is not taken before that warning reached the people
it was for: start-up included, and a receiver that fails at first included.

A real `warden run`, a Coder simulator and a webhook receiver, each stamping what it
receives on the test's clock. The workspace is idle from the start, so the warning is
decided in the very first cycle, its action due 2 s later. The receiver refuses the
first delivery (HTTP 500): the dispatcher's backoff sends it again after 5 s or more,
so the stop must wait for it, well past its own deadline.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio

from tests.events_rig import SECRET
from tests.processes import Stamp, Timeline, fleet
from tests.receivers import Answer, WebhookReceiver
from warden.clock import utc_now
from warden.sim.coder import CoderSim
from warden.sim.serving import serve

TOKEN = "warnings-first-token-0123456789"
POLICIES = """
version: 1
providers:
  coder: {type: coder, url: "%(sim)s", token: "${CODER_TOKEN}", poll_interval: 1s}
sinks:
  owners: {type: webhook, url: "%(hook)s/", secret: "%(secret)s"}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    warn_before: 2s
    notify: [owners]
"""


def is_stop(stamp: Stamp) -> bool:
    return stamp.server == "coder" and stamp.method == "POST" and stamp.path.endswith("/builds")


async def test_the_stop_waits_until_its_warning_was_delivered(tmp_path: Path) -> None:
    timeline = Timeline()
    sim = CoderSim(token=TOKEN, build_seconds=0.5)
    now = utc_now()
    idle = sim.add_workspace(
        name="idle", owner="alice", last_used_at=now - timedelta(hours=3), started_at=now
    )
    receiver = WebhookReceiver(SECRET)
    receiver.fail_next(Answer(status=500))
    sim_app, hook_app = sim.app(), receiver.app()
    sim_app.middlewares.append(timeline.middleware("coder"))
    hook_app.middlewares.append(timeline.middleware("owners"))
    async with serve(sim_app) as sim_url, serve(hook_app) as hook_url, fleet(tmp_path) as procs:
        policy_file = tmp_path / "policies.yaml"
        policy_file.write_text(POLICIES % {"sim": sim_url, "hook": hook_url, "secret": SECRET})
        env = {
            "WARDEN_POLICY_PATH": str(policy_file),
            "WARDEN_STATE_DIR": str(tmp_path / "state"),
            "CODER_TOKEN": TOKEN,
        }
        started = anyio.current_time()
        warden = await procs.start("warden-a", env)
        with anyio.fail_after(40):
            while timeline.first(is_stop) is None:
                assert warden.alive, warden.tail()
                await anyio.sleep(0.05)
        took = anyio.current_time() - started
    warned = [s for s in timeline.stamps if s.server == "owners"]
    stop = timeline.first(is_stop)
    assert stop is not None
    assert len(warned) >= 2  # refused once, then delivered
    accepted = [event for event in receiver.accepted.values() if event["type"].endswith("warned")]
    assert [event["subject"] for event in accepted] == [f"coder/{idle}"]
    assert warned[1].at < stop.at  # the delivery that succeeded came before the stop
    assert stop.at - warned[0].at >= 4.5  # the stop waited for the retry, past its 2 s
    assert took < 40
