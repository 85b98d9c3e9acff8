"""Backpressure: readers never block, memory is one frame per camera, cameras are served fairly."""

from __future__ import annotations

import threading
import time

from crowdsafe.runtime.slots import LatestSlots


def test_newest_wins_and_drops_are_counted():
    slots: LatestSlots[int] = LatestSlots()
    for i in range(100):
        slots.put("cam-1", i)
    assert slots.depth() == 1
    assert slots.take(0) == ("cam-1", 99)
    assert slots.stats["cam-1"].dropped == 99
    assert slots.take(0.01) is None


def test_round_robin_between_a_busy_and_a_quiet_camera():
    slots: LatestSlots[str] = LatestSlots()
    taken = []
    for round_ in range(5):
        slots.put("busy", f"b{round_}")
        slots.put("busy", f"b{round_}'")
        if round_ % 2 == 0:
            slots.put("quiet", f"q{round_}")
        for _ in range(2):
            item = slots.take(0)
            if item:
                taken.append(item[0])
    assert taken.count("quiet") == 3  # every quiet frame was served despite the busy camera


def test_readers_never_block_while_the_consumer_is_slow():
    slots: LatestSlots[bytes] = LatestSlots()
    stop = threading.Event()
    puts = {"n": 0, "worst": 0.0}

    def reader():
        while not stop.is_set():
            t = time.perf_counter()
            slots.put("cam", b"x" * 1000)
            puts["worst"] = max(puts["worst"], time.perf_counter() - t)
            puts["n"] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(5):  # a consumer 50 ms per frame, like a slow model
        assert slots.take(1) is not None
        time.sleep(0.05)
    stop.set()
    thread.join()
    assert slots.depth() <= 1
    assert puts["n"] > 100 and puts["worst"] < 0.05


def test_close_releases_a_waiting_consumer():
    slots: LatestSlots[int] = LatestSlots()
    result = []
    thread = threading.Thread(target=lambda: result.append(slots.take(10)))
    thread.start()
    time.sleep(0.05)
    slots.close()
    thread.join(2)
    assert result == [None]


def test_a_reader_waiting_for_its_sample_to_be_taken_wakes_when_it_is():
    slots: LatestSlots[int] = LatestSlots()
    slots.put("cam", 1)
    assert slots.wait_taken("cam", timeout=0.05) is False  # nobody took it
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(slots.wait_taken("cam", timeout=10)))
    waiter.start()
    assert slots.take(timeout=1) == ("cam", 1)
    waiter.join(5)
    assert woke == [True]
    assert slots.wait_taken("other", timeout=0) is True  # nothing pending: no wait
