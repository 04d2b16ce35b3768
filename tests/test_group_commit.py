"""Group commit (services.group_commit): whoever finds no commit running commits everything queued."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.errors import ConsentError
from pipeline.services.group_commit import GroupCommit


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


class Committer:
    """A commit that holds its first call until `release` is set, refuses odd items, records every group."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.groups: list[list[int]] = []
        self.committed: set[int] = set()

    def __call__(self, items: list[int]) -> list[BaseException | None]:
        self.entered.set()
        if not self.groups:
            self.release.wait(10)
        self.groups.append(items)
        self.committed.update(i for i in items if i % 2 == 0)
        return [ConsentError(f"item {i} refused") if i % 2 else None for i in items]


def run_all(group: GroupCommit[int], items: range, committer: Committer) -> dict[int, str]:
    """Commit each item in its own thread; the first holds the commit until all others are queued."""
    outcome: dict[int, str] = {}

    def one(i: int) -> None:
        try:
            group.commit(i)
            assert i in committer.committed  # answered only once its commit is done
            outcome[i] = "ok"
        except ConsentError as exc:
            outcome[i] = str(exc)

    first = threading.Thread(target=one, args=(items[0],))
    first.start()
    assert committer.entered.wait(10)  # the first is committing, alone
    rest = [threading.Thread(target=one, args=(i,)) for i in items[1:]]
    for thread in rest:
        thread.start()
    wait_for(lambda: group.queued() == len(rest))
    committer.release.set()
    for thread in (first, *rest):
        thread.join(10)
    return outcome


def test_requests_arriving_during_a_commit_share_the_next_one() -> None:
    committer = Committer()
    outcome = run_all(GroupCommit(committer), range(10), committer)
    assert committer.groups == [[0], list(range(1, 10))]  # two commits for ten requests
    assert outcome == {i: "ok" if i % 2 == 0 else f"item {i} refused" for i in range(10)}  # each answered alone


def test_a_failed_commit_refuses_its_whole_group_and_the_next_one_runs() -> None:
    calls: list[list[int]] = []

    def broken(items: list[int]) -> list[BaseException | None]:
        calls.append(items)
        if len(calls) == 1:
            raise ConsentError("the database went away")
        return [None] * len(items)

    group: GroupCommit[int] = GroupCommit(broken)
    with pytest.raises(ConsentError, match="went away"):
        group.commit(1)
    group.commit(2)  # the committer is free again
    assert calls == [[1], [2]] and group.queued() == 0
