"""LazyHeap: keyed min-heap with lazy invalidation."""
import random

import pytest

from hf_laps.scheduling.heap import LazyHeap

pytestmark = pytest.mark.torchfree


def test_update_remove_and_fifo_ties():
    heap = LazyHeap()
    heap.push("a", 3)
    heap.push("b", 1)
    heap.push("c", 1)
    assert heap.peek() == "b"            # ties: insertion order
    heap.push("b", 5)                    # update: old entry goes stale
    assert heap.peek() == "c"
    assert heap.remove("c") and not heap.remove("c")
    assert heap.peek() == "a" and len(heap) == 2 and "b" in heap and heap.key("b") == 5
    assert heap.pop() == "a" and heap.pop() == "b" and heap.pop() is None


def test_matches_a_sorted_reference_and_stays_compact():
    rng = random.Random(0)
    heap, ref = LazyHeap(), {}
    for step in range(20_000):
        rid = f"r{rng.randrange(300)}"
        if rng.random() < 0.2:
            heap.remove(rid)
            ref.pop(rid, None)
        else:
            key = (rng.random(), step)
            heap.push(rid, key)
            ref[rid] = key
        expected = min(ref, key=ref.get) if ref else None
        assert heap.peek() == expected
        assert len(heap._heap) <= 2 * len(ref) + 65   # compaction bounds the stale entries
