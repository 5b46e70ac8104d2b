"""What the store keeps of one budget window for one scope value: fired, acted, undone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from warden.model import Verb, WorkspaceId

WindowKey = tuple[str, str, datetime]  # (budget, scope value, window start)


@dataclass(frozen=True, slots=True)
class Acted:
    """An action a budget took, to be undone at its window's reset."""

    workspace: WorkspaceId
    verb: Verb  # stop (the kill switch is the agent-run platform's stop) or throttle
    replaced: Mapping[str, Any] | None = None  # a throttle's `Replaced.to_json()`

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"workspace": str(self.workspace), "verb": str(self.verb)}
        if self.replaced is not None:
            data["replaced"] = dict(self.replaced)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Acted:
        return cls(WorkspaceId.parse(data["workspace"]), Verb(data["verb"]), data.get("replaced"))


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowState:
    """One budget's window for one scope value (an owner, a template, "all", ...)."""

    budget: str
    scope: str
    window_start: datetime
    window_end: datetime
    fired: tuple[int, ...] = ()  # threshold indices, each at most once per window
    acted: tuple[Acted, ...] = field(default=())
    undone: bool = False

    @property
    def key(self) -> WindowKey:
        return (self.budget, self.scope, self.window_start)

    def firing(self, indices: tuple[int, ...]) -> WindowState:
        return replace(self, fired=self.fired + tuple(i for i in indices if i not in self.fired))

    def acting(self, acts: tuple[Acted, ...]) -> WindowState:
        known = {(a.workspace, a.verb) for a in self.acted}
        return replace(
            self, acted=self.acted + tuple(a for a in acts if (a.workspace, a.verb) not in known)
        )

    def without(self, done: set[tuple[WorkspaceId, Verb]]) -> WindowState:
        """The state once the undo of `done` succeeded; undone when nothing is left."""
        left = tuple(a for a in self.acted if (a.workspace, a.verb) not in done)
        return replace(self, acted=left, undone=not left)
