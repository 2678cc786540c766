"""What decisions showed each user, kept in memory beside an embedded store: what pacing reads, without a query.

Pacing reads, for every paced decision, the steps past decisions showed the user: those
within its look-back (caps, cross-channel cool-downs) and the distinct steps since the
session began (a session budget). Read from the decision records, that is two queries
whose cost grows with every decision the user had. On the embedded store this process
writes every decision record, so it can keep the same facts itself: each user's
showings since the longest look-back, and when each step was last shown, loaded from the
records once and then added to as each decision is recorded (:func:`recorded`).

The log is exact for what it holds: it answers only for a span it has whole (a look-back
that reaches further back than its entry reloads it from the records), a decision added
twice counts once, and a retention purge empties it. A shared store has other writers,
so it is not used there: pacing queries the records.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyoxigraph as ox

from service.clock import datetime_literal, now, parse_datetime
from service.decisions.holdback import Showing, showings_of
from service.knowledge.store import bound
from service.runtime import Runtime

CAPACITY = 50_000  # users whose showings are kept; the least recently paced are dropped first
KEPT = timedelta(days=31)  # showings older than this behind a user's latest are dropped (a longer look-back reloads)


@dataclass
class _Entry:
    complete_since: datetime  # every showing at or after it is in ``recent``
    recent: list[Showing] = field(default_factory=list)
    decisions: set[str] = field(default_factory=set)  # the decisions ``recent`` holds, so none is added twice
    last_shown: dict[str, datetime] = field(default_factory=dict)  # step -> when last shown, over all time


class ShownLog:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.capacity = capacity

    def history(
        self, runtime: Runtime, pseudonym: str, *, since: datetime | None, session_since: datetime | None
    ) -> tuple[list[Showing], frozenset[str]]:
        """The showings at or after ``since`` (oldest first; none for None) and the distinct steps shown at or
        after ``session_since`` (none for None)."""
        with self._lock:
            entry = self._entries.get(pseudonym)
            if entry is not None and since is not None and since < entry.complete_since:
                entry = None  # a longer look-back than the entry holds: read it again
            if entry is not None:
                self._entries.move_to_end(pseudonym)
        if entry is None:
            entry = _load(runtime, pseudonym, since)
            with self._lock:
                known = self._entries.get(pseudonym)
                if known is not None and known.complete_since <= entry.complete_since:
                    entry = known  # another thread loaded it meanwhile (and may have added since)
                else:
                    self._entries[pseudonym] = entry
                    while len(self._entries) > self.capacity:
                        self._entries.popitem(last=False)
        with self._lock:
            shown = entry.recent[bisect_left(entry.recent, since, key=_at) :] if since is not None else []
            session = frozenset(
                step for step, last in entry.last_shown.items() if session_since is not None and last >= session_since
            )
        return shown, session

    def add(self, pseudonym: str, showings: list[Showing]) -> None:
        """Add a decision's showings, where the user's entry is loaded (otherwise the records hold them)."""
        with self._lock:
            entry = self._entries.get(pseudonym)
            if entry is None:
                return
            for showing in showings:
                last = entry.last_shown.get(showing.step)
                if last is None or showing.at > last:
                    entry.last_shown[showing.step] = showing.at
            fresh = [s for s in showings if s.decision not in entry.decisions]
            in_order = not entry.recent or all(s.at >= entry.recent[-1].at for s in fresh)
            entry.recent.extend(fresh)
            entry.decisions.update(s.decision for s in fresh)
            if not in_order:  # decisions are added as they are recorded, so nearly always in order already
                entry.recent.sort(key=_at)
            cutoff = entry.recent[-1].at - KEPT if entry.recent else entry.complete_since
            if cutoff > entry.complete_since:
                dropped = entry.recent[: bisect_left(entry.recent, cutoff, key=_at)]
                entry.recent = entry.recent[len(dropped) :]
                entry.decisions.difference_update(s.decision for s in dropped)
                entry.complete_since = cutoff

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()


def _at(showing: Showing) -> datetime:
    return showing.at


_logs: weakref.WeakKeyDictionary[Runtime, ShownLog] = weakref.WeakKeyDictionary()
_logs_lock = threading.Lock()


def log_of(runtime: Runtime) -> ShownLog | None:
    """The runtime's log of showings, on an embedded store; None on a shared one."""
    if runtime.store.url is not None:
        return None
    with _logs_lock:
        found = _logs.get(runtime)
        if found is None:
            found = _logs[runtime] = ShownLog()
        return found


def recorded(runtime: Runtime, pseudonym: str, showings: list[Showing]) -> None:
    """A decision was recorded: add what it showed."""
    log = log_of(runtime)
    if log is not None:
        log.add(pseudonym, showings)


def purged(runtime: Runtime) -> None:
    """Records were purged: empty the log, which reloads from what remains."""
    log = _logs.get(runtime)
    if log is not None:
        log.forget()


def _load(runtime: Runtime, pseudonym: str, since: datetime | None) -> _Entry:
    """Read a user's entry from the decision records: the showings at or after ``since`` (none without one: the
    entry then starts now), and when each step was last shown."""
    name = ox.Literal(pseudonym)
    entry = _Entry(complete_since=since if since is not None else now())
    if since is not None:
        query = runtime.queries["shown-recently"].bind(pseudonym=name, since=datetime_literal(since), skipChannel=None)
        entry.recent = showings_of(runtime.store.select(query))
        entry.decisions = {showing.decision for showing in entry.recent}
    for row in runtime.store.select(runtime.queries["shown-last"].bind(pseudonym=name)):
        entry.last_shown[bound(row, "step").value] = parse_datetime(bound(row, "last").value)
    return entry
