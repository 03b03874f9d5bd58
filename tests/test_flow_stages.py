import threading
import time

import cv2
import numpy as np
import pytest

from flow.algorithms import FlowAlgorithm
from flow.stages import flow_fields


class Recording(FlowAlgorithm):
    """Returns a field filled with the first frame's value, after a delay that varies by pair,
    and records the thread and OpenCV thread count of each call."""

    name = "recording"

    def __init__(self):
        super().__init__()
        self.threads: list[str] = []
        self.opencv_threads: list[int] = []

    def __call__(self, prev, nxt):
        self.threads.append(threading.current_thread().name)
        self.opencv_threads.append(cv2.getNumThreads())
        value = int(prev[0, 0])
        time.sleep(0.002 * (value % 3))  # uneven: later pairs often finish first
        return np.full(prev.shape + (2,), value, np.float32)


def pairs(count: int):
    for k in range(count):
        yield k, np.full((4, 4), k, np.uint8), np.full((4, 4), k + 1, np.uint8)


def test_several_instances_give_the_fields_in_order_on_their_own_threads(opencv_three_threads):
    algorithms = [Recording() for _ in range(3)]
    results = list(flow_fields(pairs(20), algorithms))
    assert [key for key, _, _ in results] == list(range(20))
    assert [int(field[0, 0, 0]) for _, field, _ in results] == list(range(20))
    calls = [name for algorithm in algorithms for name in algorithm.threads]
    assert len(calls) == 20 and all(name.startswith("flow-calc") for name in calls)
    # Each call runs on one OpenCV thread: the flow threads are the parallelism.
    assert {n for algorithm in algorithms for n in algorithm.opencv_threads} == {1}
    assert cv2.getNumThreads() == opencv_three_threads


def test_one_instance_runs_in_the_calling_thread_with_opencvs_threads(opencv_three_threads):
    algorithm = Recording()
    assert [key for key, _, _ in flow_fields(pairs(5), [algorithm])] == list(range(5))
    assert set(algorithm.threads) == {threading.current_thread().name}
    assert set(algorithm.opencv_threads) == {opencv_three_threads}


class FailingAt(Recording):
    def __call__(self, prev, nxt):
        if prev[0, 0] == 7:
            raise RuntimeError("solver failed on pair 7")
        return super().__call__(prev, nxt)


@pytest.mark.parametrize("instances", [1, 3])
def test_a_failing_call_is_raised_in_order_and_the_threads_stop(instances):
    received = []
    with pytest.raises(RuntimeError, match="pair 7"):
        for key, _, _ in flow_fields(pairs(20), [FailingAt() for _ in range(instances)]):
            received.append(key)
    assert received == list(range(7))
    assert not [t for t in threading.enumerate() if t.name.startswith("flow-calc")]
