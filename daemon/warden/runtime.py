"""How the daemon's process sets up Python's own machinery before it runs.

The cyclic garbage collector, left as it is, runs a young collection every 700 new
container objects and now and then a full one over every live object. A cycle over
100k workspaces makes millions of short-lived containers (parsed pages, rows,
decisions) and holds hundreds of thousands of long-lived ones, so that at 100k the
collector took about a seventh of a cycle's time (timed with `gc.callbacks` on
`make bench`'s fleet). Almost none of those objects is ever part of a reference cycle:
reference counting frees them. So the daemon collects less often, and leaves out of
every collection what exists once it has started (modules, settings, policies), which
lives as long as the process.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # new container objects between two young collections (700)


def tune_garbage_collector() -> None:
    """Collect once, then freeze what is alive out of later collections and raise the
    young generation's threshold; the older generations keep their ratios."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
