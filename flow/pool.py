"""A process pool whose worker dying fails only the job it was running.

A decoder can crash its process on a malformed file (a segfault in FFmpeg), which breaks
a whole ``ProcessPoolExecutor``: every job in flight comes back as ``BrokenProcessPool``.
``pool_outcomes`` reruns those jobs one per fresh pool, so only a job that crashes its
process alone is reported (as ``Crashed``) and the others continue on a fresh pool.
Results are streamed as they finish, in no particular order.

Each process builds its job function once (``make_worker``, a picklable callable run in
the process), so state that is expensive to set up (flow solvers, thread settings) is
reused across that process's jobs. An exception the job function raises is raised to
the caller, which stops the run; per-job errors a run should survive are the function's
to turn into results.

Ctrl-C (or the caller's SIGTERM handler raising): the jobs in flight are ended, the pool
shut down, and the exception propagates. A worker never outlives the process that started
the pool: on Linux the kernel kills it when its parent dies (``PR_SET_PDEATHSIG``; with
forkserver the parent is the fork server, which exits with the main process), and a
watchdog thread ends it once that process is gone (everywhere, and for the race before the
``prctl``). Without this, a SIGKILLed run's workers finish their queued videos and then
wait forever, holding their memory (a cluster's preemption does this to every job).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Crashed", "RepeatedCrashes", "pool_outcomes"]

Job = TypeVar("Job")
Result = TypeVar("Result")

# Jobs queued per process: enough to keep each busy, few enough that 300,000 jobs never
# become 300,000 futures, and that stopping is quick.
_QUEUED_PER_PROCESS = 2


@dataclass(frozen=True)
class Crashed:
    """The outcome of a job whose process died while running it alone."""

    message: str = "the worker process crashed while running this job"


class RepeatedCrashes(RuntimeError):
    """Processes crashed on ``count`` jobs in a row, each run alone, with nothing finishing
    between: they cannot work at all (they fail to start, say), so the run stops."""

    def __init__(self, count: int, job: Any):
        super().__init__(f"worker processes crashed on {count} jobs in a row, the last {job!r}")
        self.count, self.job = count, job


# This process's job function when it is a pool's worker; set once by ``_start_worker``.
_job_function: Callable[[Any], Any] | None = None

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WATCH_SECONDS = 0.5  # how often a worker looks whether the pool's process is still there


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process under a reused pid: ours is gone
        return False
    return True


def _watch_parent(owner: int, parent: int) -> None:
    while True:
        time.sleep(_WATCH_SECONDS)
        if os.getppid() != parent or not _alive(owner):
            os._exit(1)  # nothing to flush: the job's output is temporary until finished


def _die_with_parent(owner: int) -> None:
    """Make this process end when its parent (or ``owner``, the process that started it
    through a fork server) dies: ``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog still ends it
    if os.getppid() != parent or not _alive(owner):  # died before the prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(owner, parent), name="parent-watch", daemon=True).start()


def _start_worker(make_worker: Callable[[], Callable[[Any], Any]], owner: int) -> None:
    global _job_function
    _die_with_parent(owner)
    # Ctrl-C reaches the terminal's whole process group. A worker interrupted while it
    # holds the result queue's lock leaves shutdown(wait=True) waiting forever (seen in
    # tests); the parent decides instead, and terminates the workers (_PoolRound).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _job_function = make_worker()


def _run_job(job: Any) -> Any:
    assert _job_function is not None, "worker process not initialised"
    return _job_function(job)


def _context() -> multiprocessing.context.BaseContext:
    # Not fork: the parent may hold threads (and torch's), which a forked child inherits half of.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class _PoolRound(Generic[Job, Result]):
    """One pool running ``pending`` jobs until they are done or it breaks.

    Iterating yields ``(job, result)`` as jobs finish; afterwards ``lost`` holds the jobs
    the pool did not finish because a process crashed (those in flight, unordered).
    """

    def __init__(self, pending: deque[Job], make_worker: Callable[[], Callable[[Job], Result]], processes: int):
        self.pending, self.make_worker, self.processes = pending, make_worker, processes
        self.lost: list[Job] = []

    def __iter__(self) -> Iterator[tuple[Job, Result]]:
        pool = ProcessPoolExecutor(self.processes, mp_context=_context(), initializer=_start_worker,
                                   initargs=(self.make_worker, os.getpid()))
        in_flight: dict[Future, Job] = {}
        pending, lost = self.pending, self.lost
        try:
            while (pending or in_flight) and not lost:
                while pending and len(in_flight) < _QUEUED_PER_PROCESS * self.processes:
                    try:
                        in_flight[pool.submit(_run_job, pending[0])] = pending[0]
                    except BrokenProcessPool:
                        lost.append(pending[0])
                        break
                    finally:
                        pending.popleft()
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    job = in_flight.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        lost.append(job)
                        continue
                    yield job, result
        except BaseException:
            # Ctrl-C, a fatal error in the caller, or the caller stopping early: end the jobs
            # in flight now rather than wait for them (a rerun redoes half-written output).
            for process in list((pool._processes or {}).values()):
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        lost.extend(in_flight.values())


def pool_outcomes(
    jobs: Iterable[Job],
    make_worker: Callable[[], Callable[[Job], Result]],
    processes: int,
    max_lone_crashes: int = 10,
) -> Iterator[tuple[Job, Result | Crashed]]:
    """Run ``jobs`` on ``processes`` worker processes: ``(job, result)`` as each finishes.

    ``make_worker`` runs once in each process and returns the function that runs a job
    there; both must be picklable by reference (module-level). A job whose process
    crashes is rerun alone on a fresh pool; crashing alone gives ``(job, Crashed())``.
    ``max_lone_crashes`` lone crashes in a row raise ``RepeatedCrashes``.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    pending: deque[Job] = deque(jobs)
    suspects: deque[Job] = deque()
    lone_crashes = 0
    while pending or suspects:
        alone = bool(suspects)
        round_ = _PoolRound(deque([suspects.popleft()]) if alone else pending, make_worker, 1 if alone else processes)
        for outcome in round_:
            lone_crashes = 0
            yield outcome
        if alone and round_.lost:
            lone_crashes += 1
            if lone_crashes >= max_lone_crashes:
                raise RepeatedCrashes(lone_crashes, round_.lost[0])
            yield round_.lost[0], Crashed()
        else:
            suspects.extend(round_.lost)
