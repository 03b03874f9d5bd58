"""flow.pool with toy job functions. Worker processes import this module to unpickle
them, so a function that kills its process crashes a real worker."""

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow.pool import Crashed, RepeatedCrashes, pool_outcomes


def square_or_die(job: int) -> int:
    """Dies like a segfaulting decoder on 3 (a plain exit) and 5 (a real SIGSEGV)."""
    if job == 3:
        os._exit(11)
    if job == 5:
        os.kill(os.getpid(), signal.SIGSEGV)
    return job * job


def make_square_or_die():
    return square_or_die


def test_a_crashing_job_fails_alone_and_the_others_finish():
    outcomes = dict(pool_outcomes(range(8), make_square_or_die, processes=2))
    assert outcomes == {0: 0, 1: 1, 2: 4, 3: Crashed(), 4: 16, 5: Crashed(), 6: 36, 7: 49}


def make_counter():
    calls = itertools.count()
    return lambda job: (os.getpid(), next(calls))


def test_each_process_builds_its_worker_once_and_reuses_it():
    outcomes = sorted(pool_outcomes(range(5), make_counter, processes=1))
    assert len({pid for _, (pid, _) in outcomes}) == 1 and [calls for _, (_, calls) in outcomes] == list(range(5))
    assert {pid for _, (pid, _) in outcomes} != {os.getpid()}


def wait_for_flag(job: tuple[str, str]) -> str:
    """'slow' waits until the consumer has seen the 'fast' result (signalled by a file)."""
    name, flag = job
    if name == "fast":
        return "done"
    deadline = time.monotonic() + 60
    while not Path(flag).exists():
        if time.monotonic() > deadline:
            return "never released"
        time.sleep(0.02)
    return "released"


def make_wait_for_flag():
    return wait_for_flag


def test_results_are_streamed_as_jobs_finish(tmp_path):
    flag = str(tmp_path / "flag")
    seen = []
    for (name, _), result in pool_outcomes([("slow", flag), ("fast", flag)], make_wait_for_flag, processes=2):
        seen.append((name, result))
        if name == "fast":
            Path(flag).touch()
    assert seen == [("fast", "done"), ("slow", "released")]


def fail_on_two(job: int) -> int:
    if job == 2:
        raise ValueError(f"job {job} cannot be done")
    return job


def make_fail_on_two():
    return fail_on_two


def test_an_exception_of_the_job_function_stops_the_run():
    with pytest.raises(ValueError, match="job 2 cannot be done"):
        list(pool_outcomes(range(4), make_fail_on_two, processes=2))


def always_crash(job: int) -> int:
    os._exit(11)


def make_always_crash():
    return always_crash


def make_nothing():
    raise RuntimeError("this worker cannot start")


@pytest.mark.parametrize("make_worker", [make_always_crash, make_nothing])
def test_processes_crashing_job_after_job_stop_the_run(make_worker):
    outcomes = pool_outcomes(range(5), make_worker, processes=2, max_lone_crashes=2)
    assert next(outcomes)[1] == Crashed()
    with pytest.raises(RepeatedCrashes, match="crashed on 2 jobs in a row") as raised:
        next(outcomes)
    assert raised.value.count == 2


def test_processes_must_be_positive():
    with pytest.raises(ValueError, match="processes must be >= 1"):
        list(pool_outcomes(range(2), make_counter, processes=0))


def nap(job: int) -> int:
    time.sleep(0.2)
    return os.getpid()


def make_nap():
    return nap


def _session_processes(session: int) -> list[str]:
    """Live (not zombie) processes of a session, as 'pid state' strings."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(f"{stat.parent.name} {fields[0]}")
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc to find the processes")
def test_ctrl_c_stops_the_run_and_leaves_no_process_behind():
    script = ("import sys; from flow.pool import pool_outcomes; from test_flow_pool import make_nap\n"
              "for job, pid in pool_outcomes(range(1000), make_nap, processes=2): print(pid, flush=True)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    # A session of its own, as a terminal's Ctrl-C reaches the whole foreground group.
    # SIGINT restored: a shell's background job (CI's second suite) ignores it, and the child
    # would inherit that, where a terminal's Ctrl-C reaches a process that does not.
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert run.stdout.readline().strip().isdigit()
        os.killpg(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode != 0 and "KeyboardInterrupt" in stderr
    deadline = time.monotonic() + 30
    while _session_processes(run.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _session_processes(run.pid)
