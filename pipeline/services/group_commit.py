"""Group commit: requests that arrive while one commit is running are written together in the next one.

The portal records an audit event for every download and serves nothing before that event is committed.
One transaction per download made every download pay for its own commit, its own consent and release
check and its own signed audit head. Here whoever finds no commit running takes everything queued and
commits it in one transaction (`commit_all`); the others wait and are answered when theirs is done.
Nobody waits for a timer: a lone request commits at once, and under load each commit carries whatever
arrived during the previous one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class _Waiting(Generic[T]):
    item: T
    done: bool = False
    error: BaseException | None = field(default=None)


class GroupCommit(Generic[T]):
    """Commit items in groups with `commit_all(items) -> [error or None per item]`, one call at a time.

    `commit_all` answers each item on its own (one refused item does not refuse the others); an exception
    it raises refuses every item of its group.
    """

    def __init__(self, commit_all: Callable[[list[T]], list[BaseException | None]]) -> None:
        self._commit_all = commit_all
        self._changed = threading.Condition()
        self._queue: list[_Waiting[T]] = []
        self._busy = False

    def queued(self) -> int:
        """How many items wait for the commit after the running one."""
        with self._changed:
            return len(self._queue)

    def commit(self, item: T) -> None:
        """Return once `item` is committed; raise what refused it."""
        me = _Waiting(item)
        with self._changed:
            self._queue.append(me)
            while self._busy and not me.done:
                self._changed.wait()
            if not me.done:  # no commit running: this thread commits the whole queue
                self._busy = True
                group, self._queue = self._queue, []
        if not me.done:
            self._run(group)
        if me.error is not None:
            raise me.error

    def _run(self, group: list[_Waiting[T]]) -> None:
        try:
            errors = self._commit_all([w.item for w in group])
            for waiting, error in zip(group, errors, strict=True):
                waiting.error = error
        except BaseException as exc:  # noqa: BLE001 - answered to every waiter, then raised by each of them
            for waiting in group:
                waiting.error = exc
        finally:
            with self._changed:
                for waiting in group:
                    waiting.done = True
                self._busy = False
                self._changed.notify_all()
