"""A platform's lifecycle config (Mage's): what a snapshot says it is, and a policy's change.

Mage's `patch` replaces the whole `lifecycle_config`, so Warden never sends only its
own fields: it merges them into the config the platform reported and sends the
result, keeping the start hooks (`pre_start_script_path`, `post_start`) and any
termination field the policy does not set. Pure: no I/O.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from warden.model import Workspace

FACT = "lifecycle_config"  # the snapshot fact the Mage adapter fills
TERMINATION = "termination_policy"


def current_lifecycle(ws: Workspace) -> dict[str, Any] | None:
    """The workspace's whole lifecycle config; None when the platform did not report it.

    Mage answers null for a workspace with no lifecycle config: that is known, and empty.
    """
    if FACT not in ws.facts:
        return None
    value = ws.facts[FACT]
    if value is None:
        return {}
    return copy.deepcopy(dict(value)) if isinstance(value, Mapping) else None


def termination_of(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The config's termination policy; None when it has none (or not an object)."""
    found = config.get(TERMINATION)
    return dict(found) if isinstance(found, Mapping) else None


def merge_lifecycle(current: Mapping[str, Any], termination: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with `termination`'s fields written over its termination policy; all else kept."""
    merged = copy.deepcopy(dict(current))
    merged[TERMINATION] = (termination_of(current) or {}) | dict(termination)
    return merged


def changes(current: Mapping[str, Any], termination: Mapping[str, Any]) -> list[str]:
    """What the merge changes, as "field old → new", for a decision's reason."""
    before = termination_of(current) or {}
    return [
        f"{key} {_shown(before.get(key))} → {_shown(value)}"
        for key, value in termination.items()
        if before.get(key) != value
    ]


def short_hash(value: Any) -> str:
    """A stable 12-hex-digit digest of JSON-ready data (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _shown(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)
