"""The Mage Cloud API adapter: stop and start whole Mage Pro clusters.

Each cluster named in the config (`clusters`, of one `team`) is one Warden workspace,
identified by its cluster id. Calls, all under `<url>/api/v1`:

- `POST /sessions` with `{"session": {"email", "password"}}` and the `X-API-KEY`
  header gives a session token. It is sent back as the cookie `oauth_token=<token>`
  (with the API key) on every later call, and reused until the API refuses it: on a
  401 we log in again, once, and retry that one request once. Concurrent callers
  share one login (`client.SessionAuth`).
- `GET /teams/{team}/clusters/{cluster}` reads a cluster: `status` and a `config`
  whose `replicaCount` says how many replicas run.
- `PUT` on the same path with `{"cluster": {"config": ..., "status": ...}}` writes it
  back. Stopping sets `replicaCount` 0 and status `Stopped`; starting sets it back and
  status `Active`. The config is read right before and written back whole, with only
  `replicaCount` changed, so that every other field (`extraEnvs`, images, resources)
  survives: the API replaces `config` as a whole.

Where the seed is silent:
- The replica count a stop replaced is remembered in this adapter's memory and put
  back by the next start; a start with nothing remembered (a new adapter, a daemon
  restart) uses 1, the seed's own example. The count is also in each snapshot's facts
  (`replica_count`), where the daemon's store can keep it.
- Only the statuses the seed shows are mapped: `Active` with replicas is running,
  `Stopped` with none is stopped. The two disagreeing is `unknown` (never acted on);
  any other status skips the cluster with the reason.
- Errors follow Mage's convention (an `error` body, often with HTTP 200), checked by
  `mage.check_answer`. A cluster that is gone or answers badly is skipped; a failure
  of the API itself (auth, 5xx, timeouts) fails the whole observation.
- There is no read-modify-write guard (no ETag or version) in the API: a change made
  by someone else between our read and our write is lost. We keep that window to one
  request.
- The Cloud API reports no activity: these workspaces have no `last_active_at`, so
  idle policies never stop them; lifetime and schedule policies can.

Secrets (API key, password, token) travel only in headers and the login body, through
the provider's `PlatformClient`: redirects are never followed, so neither the password
nor the token ever reaches another origin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeGuard
from urllib.parse import quote

import aiohttp
import anyio

from warden.errors import BadAnswer, ProviderError, ProviderRejected, Unauthorized, WorkspaceGone
from warden.model import State, Workspace, WorkspaceId
from warden.policy.models import MageCloudProvider
from warden.providers.base import Capability, ListFilter, Observation, Skipped
from warden.providers.client import Clocks, HeaderAuth, PlatformClient, SessionAuth
from warden.providers.mage import base_url, checked
from warden.providers.times import plausible, read_time

CAPABILITIES = frozenset({Capability.STOP, Capability.START})
KIND = "mage-cloud"
API = "/api/v1"
ACTIVE = "Active"
STOPPED = "Stopped"
DEFAULT_REPLICAS = 1
SESSION_COOKIE = "oauth_token"

# How an action changes a cluster: its config in, the new config and status out.
Change = Callable[[dict[str, Any]], tuple[dict[str, Any], str]]


class MageCloudAdapter:
    """One Mage Cloud team's configured clusters, as named in the policy file."""

    kind = KIND
    capabilities = CAPABILITIES

    def __init__(
        self,
        name: str,
        config: MageCloudProvider,
        http: aiohttp.ClientSession,
        *,
        clocks: Clocks | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._key = HeaderAuth({"X-API-KEY": config.api_key.get_secret_value()})
        self._session = SessionAuth(
            base=self._key,
            cookie=SESSION_COOKIE,
            login=self._log_in,
            secrets=(config.password.get_secret_value(),),
        )
        self.client = PlatformClient.for_config(
            name,
            config,
            http,
            base_url=base_url(str(config.url), API) + API,
            auth=self._session,
            clocks=clocks,
        )
        self._replicas: dict[str, int] = {}  # cluster id -> replicaCount a stop replaced

    def __repr__(self) -> str:
        url = self.client.base_url
        return f"MageCloudAdapter({self.name!r}, url={url!r}, team={self._config.team!r})"

    async def observe(self, *, now: datetime, filter: ListFilter | None = None) -> Observation:
        """Every configured cluster, read in parallel. The Cloud API has no filters."""
        clusters = list(dict.fromkeys(self._config.clusters))  # a cluster named twice: once
        with self.client.counting() as tally:
            answers = await self._read_all(clusters)
        workspaces: list[Workspace] = []
        skipped: list[Skipped] = []
        for cluster_id in clusters:
            answer = answers[cluster_id]
            if isinstance(answer, ProviderError):
                skipped.append(Skipped(cluster_id, str(answer)))
                continue
            try:
                workspaces.append(self._snapshot(cluster_id, answer, now))
            except (ValueError, KeyError, TypeError) as e:
                skipped.append(Skipped(cluster_id, str(e)))
        return Observation(self.name, now, workspaces, skipped, requests=tally.sent)

    async def refresh(self, native_id: str, *, now: datetime) -> Workspace:
        answer = await self._read(native_id)
        try:
            return self._snapshot(native_id, answer, now)
        except (ValueError, KeyError, TypeError) as e:
            raise BadAnswer(self.name, f"read {native_id}: {e}") from e

    async def stop(self, ws: Workspace) -> None:
        """Scale the cluster to zero, remembering the replica count it had."""
        cluster_id = ws.id.native

        def stopped(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
            replicas = config.get("replicaCount")
            if _is_count(replicas) and replicas > 0:
                self._replicas[cluster_id] = replicas
            return config | {"replicaCount": 0}, STOPPED

        await self._rewrite(cluster_id, stopped, what=f"stop {ws.ref}")

    async def start(self, ws: Workspace) -> None:
        """Scale the cluster back to the count its last stop replaced, or to 1."""
        cluster_id = ws.id.native
        remembered = self._replicas.get(cluster_id, DEFAULT_REPLICAS)

        def started(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
            current = config.get("replicaCount")
            # Someone already scaled it up: starting must not scale it down.
            replicas = current if _is_count(current) and current > 0 else remembered
            return config | {"replicaCount": replicas}, ACTIVE

        await self._rewrite(cluster_id, started, what=f"start {ws.ref}")
        self._replicas.pop(cluster_id, None)

    async def extend(self, ws: Workspace, until: datetime) -> None:
        raise ProviderRejected(self.name, f"extend {ws.ref}: Mage Cloud clusters cannot extend")

    async def aclose(self) -> None:
        """The HTTP session belongs to the daemon; the session token simply lapses."""

    def remembered_replicas(self, cluster_id: str) -> int | None:
        """The replica count the next start will restore, if a stop recorded one."""
        return self._replicas.get(cluster_id)

    # ------------------------------------------------------------ clusters

    async def _rewrite(self, cluster_id: str, change: Change, *, what: str) -> None:
        """Read the cluster, change `replicaCount` and `status`, write it back whole."""
        cluster = await self._read(cluster_id)
        config = cluster.get("config")
        if not isinstance(config, dict):
            raise BadAnswer(self.name, f"{what}: the cluster has no `config` object")
        new_config, status = change(config)
        body = {"cluster": {"config": new_config, "status": status}}
        answer = await self._call("PUT", self._cluster_path(cluster_id), what=what, body=body)
        if not isinstance(answer, dict) or not isinstance(answer.get("cluster"), dict):
            raise BadAnswer(self.name, f"{what}: the answer has no `cluster` object")

    async def _read(self, cluster_id: str) -> dict[str, Any]:
        what = f"read {cluster_id}"
        answer = await self._call("GET", self._cluster_path(cluster_id), what=what)
        cluster = answer.get("cluster") if isinstance(answer, dict) else None
        if not isinstance(cluster, dict):
            raise BadAnswer(self.name, f"{what}: the answer has no `cluster` object")
        return cluster

    async def _read_all(self, clusters: list[str]) -> dict[str, dict[str, Any] | ProviderError]:
        """Each cluster, or the per-cluster error; an API-wide failure is raised."""
        results: dict[str, dict[str, Any] | ProviderError] = {}
        await self._session.token()  # a failed login fails the listing, not one cluster

        async def read(cluster_id: str) -> None:
            try:
                results[cluster_id] = await self._read(cluster_id)
            except ProviderError as e:
                results[cluster_id] = e

        async with anyio.create_task_group() as tg:
            for cluster_id in clusters:
                tg.start_soon(read, cluster_id)
        for cluster_id in clusters:  # in config order, so the error reported is stable
            error = results[cluster_id]
            if isinstance(error, ProviderError) and not isinstance(
                error, WorkspaceGone | BadAnswer
            ):
                raise error
        return results

    def _snapshot(self, cluster_id: str, cluster: Mapping[str, Any], now: datetime) -> Workspace:
        return to_workspace(
            cluster,
            cluster_id=cluster_id,
            provider=self.name,
            team=self._config.team,
            now=now,
            remembered_replicas=self._replicas.get(cluster_id),
        )

    def _cluster_path(self, cluster_id: str) -> str:
        team = quote(self._config.team, safe="")
        return f"/teams/{team}/clusters/{quote(cluster_id, safe='')}"

    # ------------------------------------------------------------ session

    async def _call(self, method: str, path: str, *, what: str, body: Any = None) -> Any:
        """An authenticated call (the client logs in, and again once on a 401)."""
        return await self.client.request(
            method, path, what=what, json=body, check=checked(self.name, what)
        )

    async def _log_in(self) -> str:
        """A new session token, sent for with the API key only."""
        what = "log in"
        body = {
            "session": {
                "email": self._config.email,
                "password": self._config.password.get_secret_value(),
            }
        }
        try:
            answer = await self.client.request(
                "POST",
                "/sessions",
                what=what,
                json=body,
                auth=self._key,
                check=checked(self.name, what),
            )
        except ProviderRejected as e:
            # A refused login is a credentials problem, whatever Mage called it.
            status = e.status if e.status in (401, 403) else 401
            raise Unauthorized(self.name, str(e).partition(": ")[2], status=status) from e
        session = answer.get("session") if isinstance(answer, dict) else None
        token = session.get("token") if isinstance(session, dict) else None
        if not isinstance(token, str) or not token:
            raise BadAnswer(self.name, "log in: the answer has no `session.token`")
        return token


# ---------------------------------------------------------------- clusters as workspaces


def to_workspace(
    cluster: Mapping[str, Any],
    *,
    cluster_id: str,
    provider: str,
    team: str,
    now: datetime,
    remembered_replicas: int | None = None,
) -> Workspace:
    """One cluster as a neutral snapshot; ValueError says what cannot be trusted."""
    answered = cluster.get("id")
    if answered is not None and answered != cluster_id:
        raise ValueError(f"asked for cluster {cluster_id!r}, the answer is for {answered!r}")
    config = cluster.get("config")
    if not isinstance(config, dict):
        raise ValueError("`config` is missing or not an object")
    replicas = config.get("replicaCount")
    if not _is_count(replicas):
        raise ValueError(f"`config.replicaCount` is missing or not a count: {replicas!r}")
    status = cluster.get("status")
    state = cluster_state(status, replicas)
    for key in ("created_at", "updated_at"):  # not in the seed; checked when present
        plausible(read_time(cluster.get(key), key), key, now=now)
    name = cluster.get("name")
    return Workspace(
        id=WorkspaceId(provider, cluster_id),
        kind=KIND,
        name=name if isinstance(name, str) and name else cluster_id,
        owner="",  # the Cloud API names a team, not an owner
        state=state,
        observed_at=now,
        project=team,
        facts={
            "status": status,
            "replica_count": replicas,
            "restores_replicas": remembered_replicas or DEFAULT_REPLICAS,
            "activity": "unknown: the Mage Cloud API reports none",
        },
    )


def cluster_state(status: Any, replicas: int) -> State:
    """`Active` with replicas runs, `Stopped` without is stopped; a contradiction is unknown."""
    if status == ACTIVE:
        return State.RUNNING if replicas > 0 else State.UNKNOWN
    if status == STOPPED:
        return State.STOPPED if replicas == 0 else State.UNKNOWN
    raise ValueError(f"unknown cluster status {status!r}")


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
