"""A run of one job per listed video, shared by flow extraction and ``datamodules resize``.

Each listed video gets a target under the output root (its video id, never outside the
root); a video whose target is finished is skipped, two listed videos with one id are a
failure of the second; the outcomes (a result, or the reason a video failed) are tallied
into the run's summary under a progress bar, each failure printed as it happens; and the
failures are written to a list (``path<TAB>reason`` per line) that scripts can read.

SIGTERM (a cluster's preemption, ``timeout``) and Ctrl-C stop the whole run within
seconds: the jobs in flight end (``flow/pool.py``'s workers with it), one line says so,
and the exit status is 143 or 130. A video's output is temporary until complete
(``flow/outputs.py``), so the rerun redoes exactly the unfinished videos.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from contextlib import contextmanager
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from flow.frames import VideoError, first_line
from flow.ownership import VideoBusy, claim, temporary
from flow.pool import Crashed, RepeatedCrashes, pool_outcomes
from flow.paths import safe_join
from flow.sharding import Shard
from flow.summary import Failure, RunTotals
from flow.videos import id_clashes, list_videos, video_id

EXIT_FAILURES, EXIT_STOPPED = 1, 3  # some videos failed; the run stopped (full disk, crashes), rerun resumes
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM  # the shell's codes: 130, 143
MAX_LONE_CRASHES = 10  # videos in a row whose worker crashed even when run alone, before the run gives up


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException like KeyboardInterrupt, so that no per-video
    ``except Exception`` takes it for one video's failure."""


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` in the main thread while inside the block."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class FatalError(Exception):
    """The whole run must stop: the output cannot be written (full disk, unwritable root)
    or workers keep crashing."""


# Errors that every later video would hit too: stop the run instead of failing each one.
_FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def failure_reason(error: Exception, target: Path) -> str:
    """Why a video failed, for the failures list; raises FatalError for errors every later
    video would hit too (a full disk)."""
    if isinstance(error, VideoError):
        return str(error)
    if isinstance(error, OSError):
        if error.errno in _FATAL_ERRNOS:
            raise FatalError(f"cannot write {error.filename or target}: {error.strerror}") from None
        return f"{type(error).__name__}: {error}"
    return f"{type(error).__name__}: {first_line(error)}"


@dataclass(frozen=True)
class Skipped:
    """The outcome of a job whose video another writer holds or completed meanwhile (``reason``)."""

    reason: str


@dataclass(frozen=True)
class Job:
    """One listed video and where its output goes."""

    listed: str  # the path as listed, for reports
    source: Path
    target: Path


def claimed(job: Job, work: Callable[[], Any], reported: Path | None = None, others: Sequence[Path] = ()) -> Any:
    """``work()`` for a job whose output is marked finished by one file (``job.target``; the
    video's ``others`` written before it), under the video's lock (``flow/ownership.py``, which
    removes a killed writer's temporaries of them all): ``Skipped`` when another writer holds it
    or completed it since the run listed it, the failure reason (``failure_reason``, about
    ``reported``, default the target) when ``work`` raises."""
    try:
        lock = claim(job.target, others=others)
    except VideoBusy as busy:
        return Skipped(str(busy))
    try:
        if job.target.is_file():
            return Skipped("completed by another writer since this run listed it")
        return work()
    except Exception as error:  # noqa: BLE001 - one odd video must not stop the others
        return failure_reason(error, reported or job.target)
    finally:
        lock.release()


def pooled(jobs: Sequence[Job], make_worker: Callable[[], Callable[[Job], Any]], workers: int,
           doing: str) -> Iterator[tuple[Job, Any]]:
    """Jobs on ``workers`` processes (``flow.pool``): a video that crashes its process (a
    decoder's segfault on a malformed file) fails alone ("the worker process crashed while
    ``doing`` this video"), the others go on; crashes video after video stop the run (FatalError)."""
    try:
        for job, outcome in pool_outcomes(jobs, make_worker, workers, MAX_LONE_CRASHES):
            yield job, (f"the worker process crashed while {doing} this video" if isinstance(outcome, Crashed)
                        else outcome)
    except RepeatedCrashes as error:
        raise FatalError(f"worker processes crashed on {error.count} videos in a row, the last "
                         f"{error.job.listed}; see the messages above") from None


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace, shard: Shard, what: str,
                run: Callable[[list[str], Path], RunTotals]) -> int:
    """A command's run over this shard of the listed videos (``--list``, ``--extensions``),
    ``run(videos, failures_file)``; its summary printed; the exit status scripts read: 0, 1
    when videos failed (listed in ``--failures``), 3 when the run stopped (a rerun resumes),
    130 / 143 when Ctrl-C / SIGTERM stopped it (one line, no traceback; a rerun resumes)."""
    return stoppable(lambda: _run_command(parser, args, shard, what, run))


def stoppable(command: Callable[[], int]) -> int:
    """``command()``'s exit status, or 130 / 143 with one line when Ctrl-C / SIGTERM stops it."""
    try:
        with stop_on_sigterm():
            return command()
    except KeyboardInterrupt:
        stopped, status = "Ctrl-C", EXIT_INTERRUPTED
    except Terminated:
        stopped, status = "SIGTERM", EXIT_TERMINATED
    print(f"stopped by {stopped}; rerun the same command to resume (unfinished videos are redone)", file=sys.stderr)
    return status


def _run_command(parser: argparse.ArgumentParser, args: argparse.Namespace, shard: Shard, what: str,
                 run: Callable[[list[str], Path], RunTotals]) -> int:
    extensions = [ext.strip() for ext in args.extensions.split(",") if ext.strip()]
    if not extensions:
        parser.error("argument --extensions: no extension given")
    try:
        videos = shard.select(list_videos(args.video_root, args.list_file, extensions))
    except ValueError as error:
        parser.error(str(error))
    failures = args.failures or args.out_root / f"failures_shard{shard.index}of{shard.count}.txt"
    print(f"shard {shard}: {len(videos)} videos, {what} -> {args.out_root}", file=sys.stderr)
    try:
        summary = run(videos, failures)
    except FatalError as error:
        print(f"error: {error}; stopped (rerun the same command to resume)", file=sys.stderr)
        return EXIT_STOPPED
    print(summary.format())
    return EXIT_FAILURES if summary.failures else 0


def plan_jobs(videos: Sequence[str], video_root: Path | str, out_root: Path | str, target_name: Callable[[str], str],
              finished: Callable[[Job], bool], summary: RunTotals) -> list[Job]:
    """The jobs still to do: listed videos whose target (``target_name(video_id)`` under
    ``out_root``) is not ``finished``; the others are counted as skipped, and paths that
    leave a root or share a video id with another video (listed or beside it on disk) as
    failures, every one of them on every run."""
    jobs: list[Job] = []
    clashes = id_clashes(video_root, videos)
    for listed in videos:
        vid = video_id(listed)
        try:
            job = Job(listed, safe_join(video_root, listed), safe_join(out_root, target_name(vid)))
        except ValueError as error:
            summary.failures.append(Failure(listed, str(error)))
            continue
        if listed in clashes:  # a/x.avi and a/x.mp4 would have one output: which one's is unknowable
            summary.failures.append(Failure(listed, f"same video id {vid!r} as {', '.join(clashes[listed])}; "
                                                    f"rename one of them"))
            continue
        if finished(job):
            summary.skipped += 1
        else:
            jobs.append(job)
    return jobs


def run_jobs(jobs: Sequence[Job], outcomes: Iterable[tuple[Job, Any]], summary: RunTotals, desc: str,
             started: float, progress: bool = True, rate: Callable[[float], dict[str, str]] | None = None) -> None:
    """Tally ``outcomes`` (job, result, Skipped or failure reason) into ``summary`` under a progress bar
    (``rate(seconds since started)``: more of its postfix), set the run's wall time since
    ``started`` (``time.perf_counter()``), then write the failures list."""
    bar = tqdm(total=len(jobs), unit="video", desc=desc, disable=not progress, mininterval=1.0)
    try:
        for job, outcome in outcomes:
            if isinstance(outcome, str):
                summary.failures.append(Failure(job.listed, outcome))
                tqdm.write(f"failed: {job.listed}: {outcome}", file=sys.stderr)
            elif isinstance(outcome, Skipped):
                summary.in_use.append(Failure(job.listed, outcome.reason))
                tqdm.write(f"skipped: {job.listed}: {outcome.reason}", file=sys.stderr)
            else:
                summary.add(outcome)
            bar.update()
            postfix = rate(time.perf_counter() - started) if rate else {}
            bar.set_postfix({**postfix, "failed": len(summary.failures)}, refresh=False)
    finally:
        bar.close()
        summary.wall_seconds = time.perf_counter() - started
    if summary.failures_file:
        write_failures(summary.failures, summary.failures_file)


def write_failures(failures: list[Failure], path: Path) -> None:
    """One ``path<TAB>reason`` line per failed video, sorted by path."""
    lines = "".join(f"{failure.video}\t{failure.reason}\n" for failure in sorted(failures, key=lambda f: f.video))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Renamed complete: a script (or a second run on the same root) never reads half a list.
        partial = temporary(path)
        partial.write_text(lines, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        raise FatalError(f"cannot write the failures file {path}: {error.strerror}") from None
