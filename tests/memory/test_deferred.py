"""memory.deferred.DeferredWriter on its own: batching, flush, failures (no database)."""

from __future__ import annotations

import threading

from memory.deferred import DeferredWriter


def test_what_is_added_while_it_gathers_is_written_in_one_batch_and_flush_cuts_the_wait():
    batches: list[list[int]] = []
    writer = DeferredWriter(name="test", write=batches.append, gather_seconds=60)
    for item in (1, 2, 3):
        writer.add([item])
    assert batches == [] and writer.pending == 3  # still gathering (for a minute)
    assert writer.flush(timeout=5)
    assert batches == [[1, 2, 3]] and writer.pending == 0


def test_a_full_batch_is_written_without_waiting_for_the_gathering_to_end():
    written = threading.Event()
    batches: list[list[int]] = []

    def write(batch: list[int]) -> None:
        batches.append(batch)
        written.set()

    writer = DeferredWriter(name="test", write=write, gather_seconds=60, batch_max=4)
    writer.add([1, 2])
    writer.add([3, 4])
    assert written.wait(5)
    assert batches == [[1, 2, 3, 4]]


def test_a_failed_write_is_dropped_and_the_writer_goes_on():
    batches: list[list[str]] = []

    def write(batch: list[str]) -> None:
        if "bad" in batch:
            raise RuntimeError("the database is away")
        batches.append(batch)

    writer = DeferredWriter(name="test", write=write, gather_seconds=0)
    writer.add(["bad"])
    assert writer.flush(timeout=5) and writer.pending == 0
    writer.add(["good"])
    assert writer.flush(timeout=5)
    assert batches == [["good"]]
