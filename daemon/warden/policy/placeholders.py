"""Stand-ins for `${VAR}` references left unset, for linting without the secrets.

`warden validate --no-secrets` checks a policy repository in CI, where the tokens and
signing secrets do not exist. A scalar whose reference is unset gets a placeholder of
the shape its field wants (a URL where a URL goes, `whsec_...` for a webhook secret),
so that everything else is checked as usual. The field is found by walking the
models' types along the value's path in the file, as pydantic would.
"""

from __future__ import annotations

import base64
import typing
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

import yaml
from pydantic import AnyHttpUrl, BaseModel, SecretStr

from warden.events.signing import SECRET_PREFIX
from warden.policy.models import Budget, PolicyFile, Schedule, WebhookSink
from warden.policy.typewalk import (
    annotation,
    field_of,
    is_model,
    is_union,
    item_type,
    union_member,
    unwrap,
)

Child = Callable[[yaml.Node | None, str | int], yaml.Node | None]
GENERIC = "placeholder"

# Fields whose validators want more than their type says.
BY_FIELD: dict[tuple[type[BaseModel], str], str] = {
    (WebhookSink, "secret"): SECRET_PREFIX + base64.b64encode(bytes(32)).decode(),
    (Schedule, "timezone"): "UTC",
    (Schedule, "open"): "Mon-Sun 00:00-23:59",
    (Schedule, "holidays"): "US",
    (Budget, "timezone"): "UTC",
    (Budget, "per"): "all",
}
# By type; each value meets every bound a field of that type has (1m is at least a
# feed's 30s and at most `for`'s 24h; 1 is within every count's range).
BY_TYPE: dict[Any, str] = {
    str: GENERIC,
    SecretStr: GENERIC,
    AnyHttpUrl: "https://placeholder.invalid/",
    timedelta: "1m",
    bool: "false",
    int: "1",
    Decimal: "1",
}


def placeholder(root: yaml.Node | None, loc: tuple[str | int, ...], child: Child) -> str:
    """A value that the field at `loc` (a path in the file) accepts."""
    target: Any = PolicyFile
    node = root
    owner: tuple[type[BaseModel], str] | None = None
    for part in loc:
        target = _member(target, node, child)
        if is_model(target):
            found = field_of(target, part)
            if found is None:
                return GENERIC  # an unknown key: validation says so
            owner, target = (target, found[0]), annotation(found[1])
        else:
            target = item_type(target)
        node = child(node, part)
    target = _member(target, node, child)
    if typing.get_origin(target) is list:  # one value written for a list of one
        target = _member(item_type(target), node, child)
    if owner in BY_FIELD:
        return BY_FIELD[owner]
    return _by_type(target)


def _member(target: Any, node: yaml.Node | None, child: Child) -> Any:
    """The type `node` is validated as: a union's member chosen as pydantic would."""
    target, discriminator = unwrap(target)
    if not is_union(target):
        return target
    if discriminator is not None:
        tag = child(node, discriminator)
        return union_member(target, tag.value) if isinstance(tag, yaml.ScalarNode) else None
    return None  # no union without a discriminator holds a scalar in these models


def _by_type(target: Any) -> str:
    if typing.get_origin(target) is Literal:
        return str(typing.get_args(target)[0])
    if isinstance(target, type) and issubclass(target, Enum):
        return str(next(iter(target)).value)
    return BY_TYPE.get(target, GENERIC)
