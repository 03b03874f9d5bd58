"""The overlapped stages of extracting one video: decoding, flow, encoding and writing.

Every stage's heavy work (FFmpeg, OpenCV, JPEG, file writes) releases the GIL, so
threads overlap them. Each stage bounds what waits in front of it, so memory stays
small, and every stage stops cleanly (its threads joined) when another one fails.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from queue import Empty, Queue
from types import TracebackType
from typing import TypeVar

import cv2
import numpy as np

from flow.algorithms import FlowAlgorithm

# Items waiting between the decoding thread, the flow loop and the writing thread: enough
# to absorb uneven per-frame times, few enough to keep memory bounded.
QUEUE_DEPTH = 4

Key = TypeVar("Key")
Item = TypeVar("Item")


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask a cluster scheduler sets), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def prefetched(items: Iterator[Item], depth: int = QUEUE_DEPTH) -> Generator[Item, None, None]:
    """``items``, computed in a background thread up to ``depth`` ahead of the consumer.

    An exception of the thread is raised here, in the consumer; closing this generator
    stops the thread and waits for it.
    """
    queue: Queue = Queue(depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                queue.put((item, None))
                if stop.is_set():
                    return
            queue.put((end, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put((end, error))

    thread = threading.Thread(target=produce, name="flow-decode", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        # Emptying the queue unblocks a waiting put; after it the thread puts at most one
        # more item (into the empty queue) before it sees the stop.
        with suppress(Empty):
            while True:
                queue.get_nowait()
        thread.join()


@contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's own thread count set to ``count`` inside the block, restored after."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def flow_fields(
    pairs: Iterable[tuple[Key, np.ndarray, np.ndarray]], algorithms: Sequence[FlowAlgorithm]
) -> Iterator[tuple[Key, np.ndarray, float]]:
    """``(key, field, seconds)`` for each ``(key, first, second)`` pair, in order.

    With n algorithm instances, n pairs are computed at once, one per thread, each call
    on one OpenCV thread. Pairs are independent, so this gives the same fields as one
    instance would, and for the fast solvers it uses the cores better than OpenCV's own
    threads inside one call (DIS on 2 cores: 1.4x from OpenCV's threads, 2x from pairs).
    ``seconds`` is the time spent inside the call (summed over threads, it can exceed
    the wall-clock time). A failing call raises here; the other threads are stopped.
    """
    if len(algorithms) == 1:
        # One instance runs in the calling thread: torch (RAFT on a CPU) is ~40% slower
        # from a pool thread than from the thread that set up its OpenMP threads.
        for key, first, second in pairs:
            tick = time.perf_counter()
            field = algorithms[0](first, second)
            yield key, field, time.perf_counter() - tick
        return
    idle: Queue = Queue()
    for algorithm in algorithms:
        idle.put(algorithm)

    def compute(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, float]:
        algorithm = idle.get()
        try:
            tick = time.perf_counter()
            field = algorithm(first, second)
            return field, time.perf_counter() - tick
        finally:
            idle.put(algorithm)

    threads = len(algorithms)
    pending: deque[tuple[Key, Future]] = deque()
    with opencv_threads(1), ThreadPoolExecutor(threads, thread_name_prefix="flow-calc") as pool:
        try:
            for key, first, second in pairs:
                pending.append((key, pool.submit(compute, first, second)))
                # Twice the threads in flight: a thread finishing early finds its next pair ready.
                if len(pending) >= 2 * threads:
                    key, future = pending.popleft()
                    yield key, *future.result()
            while pending:
                key, future = pending.popleft()
                yield key, *future.result()
        finally:
            for _, future in pending:
                future.cancel()


class Writer:
    """Runs write tasks in order in a background thread, at most ``depth`` waiting.

    The first failing task stops all writing (a full disk sees no further write); its
    error is raised in the caller by the next ``put``, or on leaving the ``with`` block.
    """

    def __init__(self, depth: int = QUEUE_DEPTH) -> None:
        self.written = 0
        self._error: BaseException | None = None
        self._queue: Queue = Queue(depth)
        self._thread = threading.Thread(target=self._run, name="flow-write", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_type is None:
            self._raise_error()

    def put(self, task: Callable[[], int]) -> None:
        """Queue ``task``, which writes and returns the number of bytes written."""
        self._raise_error()
        self._queue.put(task)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (task := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.written += task()
                except BaseException as error:  # noqa: BLE001 - raised in the caller
                    self._error = error
