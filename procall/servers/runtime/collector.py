"""The garbage collector of a server process, tuned for short pauses.

Python's cyclic collector stops the event loop while it runs, for a time that grows
with the objects it looks at: every delivery on a busy server pauses for as long as
the longest collection. Three things keep those pauses short:

* what start-up built (modules, the gRPC server, the stores) lives as long as the
  process: it is frozen (``gc.freeze``) so that no collection looks at it again;
* a young collection looks at the objects allocated since the last one: at
  ``YOUNG_THRESHOLD`` it stays at a few milliseconds (measured on a busy 2-core box,
  UCServers under presence load at 10,000 deliveries/s, CPU time per collection:
  10-17 ms at 50,000; median 2 ms, at most 7-12 ms at 5,000; at 2,000 the middle
  collections grew to 17-22 ms), while the collector still costs little (about two
  collections a second, 0.2 % of the CPU);
* full collections, which look at every object the process made since start-up
  (tens of milliseconds at thousands of sessions), wait until many middle-aged
  collections have passed (``OLD_THRESHOLD``), on top of Python's own rule that the
  old generation must have grown by a quarter since the last one.

A middle-generation collection (every ``MIDDLE_THRESHOLD`` young ones, about every 30 s
under that load) looks at every object made since the last one that is still alive: the
sessions set up meanwhile and the events waiting in the replay buffers for the clients'
acks. It took 28-52 ms of CPU once per UCServer in a 15 s run while each buffered event
was an object of its own; the buffers now keep no object per event (``EventLog``: the
times and the payloads, which the recipients of a delivery share), so only one object
per delivery waits for the acks.
"""

from __future__ import annotations

import gc

__all__ = ["MIDDLE_THRESHOLD", "OLD_THRESHOLD", "YOUNG_THRESHOLD", "tune_collector"]

#: Net new container objects that trigger a young collection.
YOUNG_THRESHOLD = 5_000
#: Young collections per middle-generation collection.
MIDDLE_THRESHOLD = 50
#: Middle-generation collections before a full one is considered.
OLD_THRESHOLD = 100


def tune_collector() -> None:
    """Collect once, freeze what survived (the start-up heap) and set the thresholds.

    Call it once the server has started, before it takes load.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
