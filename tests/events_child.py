"""A dispatcher process for the crash test: `python -m tests.events_child DB_URL HOOK_URL`.

It delivers the outbox of the SQLite file at DB_URL to one signed webhook sink until
it is killed. It polls the outbox quickly: no daemon in this process notifies it.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import aiohttp
import anyio
from pydantic import SecretStr

from tests.events_rig import SECRET
from warden.events.dispatcher import DeliveryPolicy, Dispatcher
from warden.policy.models import WebhookSink
from warden.store import Store

QUICK = DeliveryPolicy(
    poll_interval=timedelta(milliseconds=20),
    backoff_base=timedelta(milliseconds=20),
    backoff_cap=timedelta(milliseconds=100),
    timeout=timedelta(seconds=30),
)


async def main(db_url: str, hook_url: str) -> None:
    store = await Store.open(db_url)
    sink = WebhookSink(type="webhook", url=hook_url, secret=SecretStr(SECRET))
    async with aiohttp.ClientSession() as http:
        dispatcher = Dispatcher(store, sinks={"hook": sink}, policies=[], http=http, delivery=QUICK)
        print("delivering", flush=True)
        await dispatcher.run(anyio.Event())


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
