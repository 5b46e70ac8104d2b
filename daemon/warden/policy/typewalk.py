"""Following a path through the policy models' types: which field a key names.

Used to turn pydantic's error locations back into what the admin wrote, and to know
what a value in the file is meant to be (lint mode's placeholders).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo


def field_of(model: type[BaseModel], key: str | int) -> tuple[str, FieldInfo] | None:
    """The field `key` names, by its name or by its alias (`for` is `for_`)."""
    info = model.model_fields.get(str(key))
    if info is not None and info.alias is None:
        return str(key), info
    for name, candidate in model.model_fields.items():
        if candidate.alias == key:
            return name, candidate
    return None


def written_names(model: type[BaseModel]) -> list[str]:
    """The keys a mapping of `model` may hold, as an admin writes them."""
    return [info.alias or name for name, info in model.model_fields.items()]


def annotation(info: FieldInfo) -> Any:
    """A field's type, keeping its discriminator where it has one."""
    if info.discriminator is not None:
        return typing.Annotated[info.annotation, info]
    return info.annotation


def unwrap(target: Any) -> tuple[Any, str | None]:
    """Strip Annotated and Optional; say which discriminator a union carries, if any."""
    discriminator: str | None = None
    while True:
        if typing.get_origin(target) is typing.Annotated:
            target, *metadata = typing.get_args(target)
            for item in metadata:
                if isinstance(item, FieldInfo) and isinstance(item.discriminator, str):
                    discriminator = item.discriminator
        elif is_union(target):
            members = [m for m in typing.get_args(target) if m is not type(None)]
            if len(members) != 1:
                return target, discriminator
            target = members[0]
        else:
            return target, discriminator


def is_union(target: Any) -> bool:
    return typing.get_origin(target) in (typing.Union, types.UnionType)


def is_model(target: Any) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(target, type) and issubclass(target, BaseModel)


def union_member(union: Any, tag: object) -> Any:
    """The member of a discriminated union whose `type` is `tag` (None: no such member)."""
    for member in typing.get_args(union):
        if str(tag) in tags_of(member):
            return member
    return None


def tags_of(member: Any) -> list[str]:
    """The `type` values a member of a discriminated union stands for."""
    if not is_model(member):
        return []
    info = member.model_fields.get("type")
    if info is None or typing.get_origin(info.annotation) is not Literal:
        return []
    return [str(tag) for tag in typing.get_args(info.annotation)]


def item_type(target: Any) -> Any:
    """What a list holds or a mapping maps to (None for anything else)."""
    origin, args = typing.get_origin(target), typing.get_args(target)
    return args[-1] if origin in (dict, list) and args else None


def constraints(target: Any) -> list[Any]:
    """The constraints (annotated_types' Ge, Le, ...) on a type's Annotated layers."""
    found: list[Any] = []
    while typing.get_origin(target) is typing.Annotated:
        target, *metadata = typing.get_args(target)
        for item in metadata:
            found.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return found
