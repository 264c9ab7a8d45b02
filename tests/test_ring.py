"""The native queue on its own, against a model: pushes, takes, commits, take-backs and growth in
any order keep every entry once, in order, with its bytes."""

import json
from typing import Any

import orjson
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dreamlake._core import Ring
from dreamlake._encode import clean_str

LIMIT = 1 << 16  # the smallest ring: growth, wrapping and a full queue all happen within a few steps


class RingModel(RuleBasedStateMachine):
    """`queued` and `taken` model the ring: (serial, message, metadata) of each live entry."""

    def __init__(self) -> None:
        super().__init__()
        self.ring = Ring(limit=LIMIT)
        self.ring.mark = 1 << 30
        self.queued: list[tuple[int, str, Any]] = []
        self.taken: list[tuple[int, str, Any]] = []
        self.serial = 0
        self.written: list[tuple[str, Any]] = []
        self.oversized = False  # an entry bigger than LIMIT was held since the ring was last empty

    @rule(
        size=st.sampled_from([0, 1, 7, 8, 100, 5000, 30000, 70000]),
        text=st.text(max_size=3),
        metadata=st.sampled_from([None, {"a": 1}, {"s": "x" * 200}]),
    )
    def push(self, size: int, text: str, metadata: Any) -> None:
        message = text + "m" * size
        token = self.ring.push(1_700_000_000 * 10**9 + self.serial, 1, message, orjson.dumps(metadata))
        if token == -1:  # no room: nothing was queued
            assert self.ring.serial == self.serial
            return
        assert token == 0
        self.oversized = self.oversized or len(message) > LIMIT
        self.queued.append((self.serial, message, metadata))
        self.serial += 1

    @rule(most=st.integers(0, 5))
    def take(self, most: int) -> None:
        taken = self.ring.take(most)
        assert taken == min(most, len(self.queued))
        self.taken += self.queued[:taken]
        del self.queued[:taken]

    @rule(first=st.integers(0, 10**6))
    def format_and_maybe_commit(self, first: int) -> None:
        data = self.ring.format(first, [], bytes)
        records = [json.loads(line) for line in data.splitlines()]
        assert [(r["message"], r["metadata"], r["sequenceNumber"]) for r in records] == [
            (clean_str(m), md, first + i) for i, (_, m, md) in enumerate(self.taken)
        ]

    @rule()
    def commit(self) -> None:
        self.ring.commit()
        self.written += [(m, md) for _, m, md in self.taken]
        self.taken = []
        if not self.queued and self.ring.size == 0:  # empty: an oversized buffer is given back
            self.oversized = False

    @precondition(lambda self: self.queued)
    @rule(which=st.integers(0, 100))
    def remove(self, which: int) -> None:
        serial = self.queued[which % len(self.queued)][0]
        assert self.ring.remove(serial)
        assert not self.ring.remove(serial), "taken back once"
        self.queued = [e for e in self.queued if e[0] != serial]

    @precondition(lambda self: self.taken)
    @rule()
    def remove_taken_fails(self) -> None:
        assert not self.ring.remove(self.taken[-1][0])

    @rule(back=st.integers(0, 3))
    def pop(self, back: int) -> None:
        since = self.serial - back
        newest = self.queued[-1][0] if self.queued else -1
        popped = self.ring.pop(since, self.serial)
        assert popped == (newest >= since and newest >= 0)
        if popped:
            self.queued.pop()

    @invariant()
    def counts_and_bounds(self) -> None:
        assert len(self.ring) == len(self.queued)
        assert self.ring.pending == len(self.taken)
        assert self.ring.capacity <= LIMIT or self.oversized, "grown past the limit"


TestRing = RingModel.TestCase
TestRing.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


def test_a_record_bigger_than_the_limit_gets_a_ring_of_its_own_and_gives_it_back() -> None:
    ring = Ring(limit=LIMIT)
    ring.mark = 1 << 30
    assert ring.push(0, 1, "x" * (5 * LIMIT), None) == 0
    assert ring.capacity >= 5 * LIMIT
    assert ring.push(0, 1, "y", None) == -1, "full: the big one fills it"
    assert ring.take(10) == 1
    assert json.loads(ring.format(0, [], bytes))["message"] == "x" * (5 * LIMIT)
    ring.commit()
    assert ring.capacity == LIMIT and ring.size == 0


def test_metadata_objects_are_resolved_by_the_writer_and_released_at_commit() -> None:
    class Held:
        pass

    held = Held()
    ring = Ring(points=True)
    ring.mark = 1 << 30
    ring.push_point(0, held)
    ring.take(1)
    seen = []
    line = ring.format(4, [], lambda obj: seen.append(obj) or b'{"v":1}')
    assert seen == [held] and json.loads(line) == {
        "index": 4,
        "data": {"v": 1},
        "createdAt": "1970-01-01T00:00:00.000000Z",
    }
    import sys

    before = sys.getrefcount(held)
    ring.commit()
    assert sys.getrefcount(held) == before - 1, "the ring lets go of it once written"


def test_growth_keeps_what_the_writer_took_apart_from_what_is_queued() -> None:
    """Entries taken, others queued behind them, wrapped, then a push that makes the ring grow:
    the writer still formats exactly what it took, and the queued ones follow."""
    ring = Ring(limit=1 << 20)
    ring.mark = 1 << 30
    pushed = 0
    for _ in range(3):  # wrap: fill without growing, take and commit part of it
        while ring.size + 2 * 6100 < ring.capacity:
            assert ring.push(0, 1, f"a{pushed}" + "x" * 6000, None) == 0
            pushed += 1
        ring.take(5)
        ring.commit()
    assert ring.capacity == 1 << 16
    assert len(ring) == 3 and ring.take(1) == 1  # one taken, two queued behind it
    taken = [json.loads(line)["message"][:6] for line in ring.format(0, [], bytes).splitlines()]
    assert ring.push(0, 1, "big" + "y" * 200_000, None) == 0, "grown"
    assert ring.capacity > 1 << 16
    assert taken == [json.loads(line)["message"][:6] for line in ring.format(0, [], bytes).splitlines()]
    ring.commit()
    queued = len(ring)
    assert ring.take(1000) == queued
    messages = [json.loads(line)["message"] for line in ring.format(0, [], bytes).splitlines()]
    assert messages[-1].startswith("big") and len(messages) == queued == 3
    firsts = [int(m[1 : m.index("x")]) for m in messages[:-1]]
    assert firsts == sorted(firsts) and firsts[0] == int(taken[-1][1 : taken[-1].index("x")]) + 1


def test_entries_taken_back_hold_no_room() -> None:
    """A queue holding only taken-back entries is empty: a record as big as the limit fits."""
    ring = Ring(limit=LIMIT)
    ring.mark = 1 << 30
    ring.push(0, 1, "x" * 1000, None)
    assert ring.remove(0) and len(ring) == 0 and ring.size == 0
    assert ring.push(0, 1, "y" * (LIMIT - 100), None) == 0
    assert ring.take(5) == 1 and json.loads(ring.format(7, [], bytes))["sequenceNumber"] == 7
