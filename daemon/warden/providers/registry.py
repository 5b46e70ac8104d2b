"""Provider types by the `type` name used in policy files, and what each can do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp

from warden.providers import agentrun, coder, mage, mage_cloud, strongly
from warden.providers.base import Capability, Provider
from warden.providers.client import Clocks


class Factory(Protocol):
    """An adapter class: (name, config, the daemon's HTTP session), and the clocks its
    platform client reads (the real ones unless given)."""

    def __call__(
        self, name: str, config: Any, http: aiohttp.ClientSession, *, clocks: Clocks | None = None
    ) -> Provider: ...


FACTORIES: Mapping[str, Factory] = {
    "coder": coder.CoderAdapter,
    "agentrun": agentrun.AgentRunAdapter,
    "mage": mage.MageAdapter,
    "mage-cloud": mage_cloud.MageCloudAdapter,
    "strongly": strongly.StronglyAdapter,
}
CAPABILITIES: Mapping[str, frozenset[Capability]] = {
    "coder": coder.CAPABILITIES,
    "agentrun": agentrun.CAPABILITIES,
    "mage": mage.CAPABILITIES,
    "mage-cloud": mage_cloud.CAPABILITIES,
    "strongly": strongly.CAPABILITIES,
}


def capability_names() -> dict[str, frozenset[str]]:
    """Capabilities as plain strings, for validating policy files."""
    return {kind: frozenset(str(c) for c in caps) for kind, caps in CAPABILITIES.items()}


def build_provider(
    name: str, config: Any, http: aiohttp.ClientSession, *, clocks: Clocks | None = None
) -> Provider:
    """The adapter for one configured provider instance.

    `clocks` time its Retry-After holds; a daemon with an injected clock passes
    `Clocks.following(clock)` so that a hold ends when that clock passes it.
    """
    try:
        factory = FACTORIES[config.type]
    except KeyError:
        raise ValueError(f"provider {name!r}: type {config.type!r} is not supported yet") from None
    return factory(name, config, http, clocks=clocks)
