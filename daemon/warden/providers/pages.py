"""Reading a paginated listing, with what the platform says about it taken as claims.

A platform's `count` says how many workspaces it holds; a page says what it holds.
Only pages are believed. Pages are read in waves of at most `concurrency` at once, and
the listing ends at the first empty page or short page (fewer items than the page
size the server applied), or at `max_pages`: a page beyond the cap is never asked
for, so a `count` of a billion costs at most a wave of pages past the real end, and
memory stays bounded. The `count` only sizes a wave (never more pages than it claims
are left, never fewer than one), and is reported as a claim (`Listing.claimed`).

When the first page fails, nothing is known and its error is raised. When a later page
fails, the listing goes on without it and says so: `complete` is False and the page
is named in `unread` (`Skipped(None, "page @<offset>: <reason>")`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from warden.errors import ProviderError
from warden.model import Workspace
from warden.providers.base import Observation, Skipped

MAX_PAGES = 2000  # per listing, unless the provider's config says `max_pages`


@dataclass(frozen=True, slots=True)
class Page:
    """One page as the platform answered it."""

    items: list[Any]
    size: int  # the page size the server applied (the first page's decides)
    claimed: int | None = None  # how many the platform says the whole listing holds


@dataclass(frozen=True, slots=True)
class Listing:
    """The items of every page read, in offset order, and what could not be read."""

    items: list[Any]
    claimed: int | None  # the platform's own count, as it claimed it on the first page
    unread: list[Skipped] = field(default_factory=list)  # one per page that failed
    capped: bool = False  # stopped at the page cap with the last page still full

    @property
    def complete(self) -> bool:
        return not self.unread and not self.capped

    @property
    def unread_pages(self) -> int:
        return len(self.unread) + (1 if self.capped else 0)

    def observation(
        self,
        provider: str,
        now: datetime,
        workspaces: list[Workspace],
        skipped: list[Skipped],
        *,
        requests: int,
    ) -> Observation:
        """The poll's observation: the workspaces read, with what the listing could not."""
        return Observation(
            provider,
            now,
            workspaces,
            [*self.unread, *skipped],
            requests=requests,
            complete=self.complete,
            unread_pages=self.unread_pages,
            listed=self.claimed,
        )


Fetch = Callable[[int], Awaitable[Page]]  # the page at an offset


async def read_configured_pages(fetch: Fetch, config: Any) -> Listing:
    """`read_pages` with the provider's `concurrency`, and `max_pages` when it has one."""
    max_pages = int(getattr(config, "max_pages", MAX_PAGES))
    return await read_pages(fetch, concurrency=config.concurrency, max_pages=max_pages)


async def read_pages(fetch: Fetch, *, concurrency: int, max_pages: int) -> Listing:
    """Every page from offset 0 to the end, in bounded waves."""
    first = await fetch(0)  # its failure is the listing's: nothing is known
    size, claimed = first.size, first.claimed
    items = list(first.items)
    unread: list[Skipped] = []
    ended, pages, offset = _is_last(first, size), 1, size
    while not ended and pages < max_pages:
        offsets = [offset + i * size for i in range(_wave(claimed, offset, size, concurrency))]
        offsets = offsets[: max_pages - pages]
        answers = await _fetch_all(fetch, offsets)
        pages, offset = pages + len(offsets), offsets[-1] + size
        read_any = False
        for at in offsets:
            answer = answers[at]
            if isinstance(answer, ProviderError):
                if not ended:  # a failure past the end found in this wave is no loss
                    unread.append(Skipped(None, _reason(at, answer)))
                continue
            read_any = True
            items.extend(answer.items)  # even past a short page: a shifted listing loses none
            ended = ended or _is_last(answer, size)
        if not read_any:
            break  # a wave of failures: whether more pages exist is unknown
    capped = not ended and pages >= max_pages
    return Listing(items, claimed, unread, capped)


def _is_last(page: Page, size: int) -> bool:
    return len(page.items) < size or not page.items


def _wave(claimed: int | None, offset: int, size: int, concurrency: int) -> int:
    """Pages to ask for at once: as many as the count claims are left, within [1, concurrency]."""
    if claimed is None:
        return concurrency
    left = math.ceil(max(claimed - offset, 0) / size)
    return max(1, min(concurrency, left))


async def _fetch_all(fetch: Fetch, offsets: list[int]) -> dict[int, Page | ProviderError]:
    answers: dict[int, Page | ProviderError] = {}

    async def one(at: int) -> None:
        # Caught here: a task group would wrap it in an ExceptionGroup.
        try:
            answers[at] = await fetch(at)
        except ProviderError as e:
            answers[at] = e

    async with anyio.create_task_group() as tg:
        for at in offsets:
            tg.start_soon(one, at)
    return answers


def _reason(offset: int, error: ProviderError) -> str:
    """`page @<offset>: <cause>`, the cause without the provider and the call it repeats."""
    text = str(error).removeprefix(f"{error.provider}: ")
    _what, colon, cause = text.partition(": ")
    return f"page @{offset}: {cause if colon else text}"
