"""Extracting optical flow from videos into folders of JPEGs (or packs): one video, and many.

A video's folder (or pack) is built under a temporary name of its writer's, meta.json
last, and renamed into place complete (``flow/outputs.py``); a lock per video keeps a
second run on the same root off it (``flow/ownership.py``). A run killed at any point
leaves nothing that looks complete, and the next run redoes exactly the unfinished videos.
Per-video problems (corrupt or truncated files, too few frames) are reported and skipped;
a full disk or an unwritable output root stops the run, because every later video would
fail the same way.

Listing videos and naming them is ``flow/videos.py``; running videos on worker
processes that may crash is ``flow/pool.py``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from functools import partial
from itertools import chain, islice
from pathlib import Path

import cv2
import numpy as np

from flow.algorithms import FlowAlgorithm
from flow.codec import encode_flow
from flow.frames import VideoError
from flow.meta import META_FILE
from flow.extraction_config import ExtractionConfig, open_video
from flow.outputs import VideoBusy, VideoOutput, clear_folder, finish_video, open_output, write_jpeg
from flow.packed import PACK_SUFFIX
from flow.stages import Writer, flow_fields, prefetched, usable_cores
from flow.summary import Summary, VideoResult
from flow.video_run import FatalError, Job, Skipped, failure_reason, plan_jobs, pooled, run_jobs
from flow.videos import VIDEO_EXTENSIONS, list_videos, video_id

# The listing names stay importable from here, where callers have always found them.
__all__ = [
    "VIDEO_EXTENSIONS", "ExtractionConfig", "FatalError", "Job", "VideoError", "check_writable", "clear_folder",
    "extract_many", "extract_video", "list_videos", "open_video", "video_id",
]  # fmt: skip

def _write_flow(output: VideoOutput, paths: Sequence[Path], field_: np.ndarray, bound: float, quality: int) -> int:
    return sum(output.write(path.name, data) for path, data in zip(paths, encode_flow(field_, bound, quality)))


def extract_video(
    video_path: Path | str,
    out_dir: Path | str,
    config: ExtractionConfig,
    algorithms: Sequence[FlowAlgorithm] | None = None,
    source: str | None = None,
    replace: bool = True,
    output: VideoOutput | None = None,
) -> VideoResult:
    """Extract one video into ``out_dir`` (built as ``<out_dir>.tmp-<host>-<pid>`` and renamed
    when complete; earlier files of ours there are replaced, a complete output only with
    ``replace``), or with ``config.store``
    "packed" into the pack ``<out_dir>.zip`` (no folder is made).

    Field k is the flow from sampled frame k to k+1; with ``config.backward`` also from
    k+1 back to k. ``algorithms`` (one instance per flow thread, all of one kind) lets a
    caller reuse them over many videos; by default ``config.create_algorithms()``.
    ``source`` is what meta.json records as the source (default: the path given).
    Raises VideoError for a video that cannot be extracted, VideoBusy for one another
    writer holds (``flow/ownership.py``) or, without ``replace``, one already complete (a run
    passes replace=False: another writer completed the video since the run listed it).
    ``output``: where the files go instead (``flow.memory_store.MemoryOutput``: in memory);
    their names are still those of ``out_dir``'s layout.
    """
    started = time.perf_counter()
    video_path, out_dir = Path(video_path), Path(out_dir)
    algorithms = list(algorithms or config.create_algorithms())
    color = algorithms[0].needs_color
    layout = config.layout
    flow_seconds = 0.0
    num_frames = 0
    # Opened first: a video another writer holds is skipped before any decoding, and a
    # killed writer's leftovers go even when this video then fails.
    output = open_output(out_dir, config, replace) if output is None else output
    try:
        frames = open_video(video_path, config, gray=not color, rgb=color or config.rgb)
        # Four stages overlap: decoding (a thread), flow (a thread per algorithm instance),
        # this loop, and JPEG encoding + writing (a thread).
        with closing(prefetched(iter(frames))) as decoded:
            head = list(islice(decoded, 2))
            if len(head) < 2:
                raise VideoError(f"{len(head)} frame(s) after sampling every {config.step}; a flow field needs 2")
            with Writer() as writer:

                def pairs() -> Iterator[tuple[tuple[int, bool], np.ndarray, np.ndarray]]:
                    nonlocal num_frames
                    previous = None
                    for k, frame in enumerate(chain(head, decoded)):
                        num_frames += 1
                        if config.rgb:
                            path = layout.rgb_path(out_dir, k)
                            writer.put(partial(write_jpeg, output, path, frame.rgb, config.quality))
                        current = frame.rgb if color else frame.gray
                        if previous is not None:
                            yield (k - 1, False), previous, current
                            if config.backward:
                                yield (k - 1, True), current, previous
                        previous = current

                for (index, backward), field_, seconds in flow_fields(pairs(), algorithms):
                    flow_seconds += seconds
                    paths = layout.flow_paths(out_dir, index, backward)
                    writer.put(partial(_write_flow, output, paths, field_, config.bound, config.quality))

            return finish_video(output, config, algorithms[0].params(), frames, num_frames,
                                source or str(video_path), writer.written, time.perf_counter() - started,
                                flow_seconds)
    except BaseException:
        output.discard()  # the writer thread has stopped: nothing writes into it any more
        raise


def check_writable(out_root: Path) -> None:
    """Create ``out_root`` and a probe file in it, so a bad root fails once, up front."""
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_root, prefix=".write-probe-"):
            pass
    except OSError as error:
        raise FatalError(f"output root {out_root} is not writable: {error.strerror or error}") from None


Outcome = tuple[Job, VideoResult | Skipped | str]


class _Worker:
    """Extracts jobs with the algorithm instances of one of ``workers`` workers; returns a
    VideoResult or a failure reason."""

    def __init__(self, config: ExtractionConfig, workers: int = 1):
        self.config = config
        self.algorithms = config.create_algorithms(workers)

    def __call__(self, job: Job) -> VideoResult | Skipped | str:
        try:
            return extract_video(job.source, job.target, self.config, self.algorithms, source=job.listed,
                                 replace=False)
        except VideoBusy as busy:
            return Skipped(str(busy))
        except Exception as error:  # noqa: BLE001 - one odd video must not stop 300,000
            # Its partial output is gone already (extract_video discards it), also on a full disk.
            return failure_reason(error, job.target)


def _process_worker(config: ExtractionConfig, workers: int) -> _Worker:
    """The extractor of one of ``workers`` worker processes (built in that process)."""
    # Workers and their flow threads are the parallelism: OpenCV's own threads (decoding,
    # JPEG) would only oversubscribe the cores; the algorithm sizes the pool its calls run on.
    cv2.setNumThreads(1)
    worker = _Worker(config, workers)
    worker.algorithms[0].size_worker_threads(max(1, usable_cores() // workers))
    return worker


def _outcomes(jobs: Sequence[Job], config: ExtractionConfig, workers: int) -> Iterator[Outcome]:
    if config.batch:
        from flow.batched import batched_outcomes  # imports torch

        yield from batched_outcomes(jobs, config)
    elif workers > 1:
        yield from pooled(jobs, partial(_process_worker, config, workers), workers, "extracting")
    else:
        # In-process: no start-up cost; the flow threads use all the cores on one video at a time.
        worker = _Worker(config)
        for job in jobs:
            yield job, worker(job)


def extract_many(
    video_root: Path | str,
    videos: Sequence[str],
    out_root: Path | str,
    config: ExtractionConfig,
    workers: int = 1,
    failures_file: Path | str | None = None,
    progress: bool = True,
) -> Summary:
    """Extract ``videos`` (paths relative to ``video_root``) into ``out_root/<video_id>/``.

    Videos whose folder already has meta.json are skipped; failures are collected (and
    written to ``failures_file``, one ``path<TAB>reason`` line each, when given).
    Raises FatalError when the output cannot be written at all.
    """
    if config.batch and workers > 1:
        raise ValueError(f"batched extraction runs in one process (one per GPU: split the videos with shards), "
                         f"got {workers} workers")
    started = time.perf_counter()
    out_root = Path(out_root)
    check_writable(out_root)
    summary = Summary(failures_file=Path(failures_file) if failures_file else None)
    finished = ((lambda job: job.target.with_name(job.target.name + PACK_SUFFIX).is_file()) if config.store == "packed"
                else (lambda job: (job.target / META_FILE).is_file()))
    jobs = plan_jobs(videos, video_root, out_root, lambda vid: vid, finished, summary)
    run_jobs(jobs, _outcomes(jobs, config, workers), summary, "flow", started, progress,
             rate=lambda seconds: {"pairs/s": f"{summary.pairs / seconds:.1f}"})
    return summary
