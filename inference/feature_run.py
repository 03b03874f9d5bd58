"""Features of many videos: one set of ``.npy`` files per video, written complete or not at all.

Per video, under the output root, at the video's id (``flow.videos.video_id``):
``<id>_rgb.npy`` and/or ``<id>_flow.npy`` (float32, T x D, or T x 10 x D with ten crops;
``<id>_concat.npy`` instead with ``--concat``) and ``<id>_timestamps.npy`` (float64, T x 2:
each snippet's start and end in seconds). Each file is written under its writer's temporary
name (``flow.ownership.completed_file``), flushed to disk and renamed; the timestamps go last, so
they mark a finished video: a rerun skips it and redoes every other one (arrays without
timestamps are a killed writer's, overwritten). A lock per video (``flow/ownership.py``)
keeps two runs on one root apart; the rerun that takes over a killed writer's lock removes
that writer's temporaries of every file of the video, a live writer's stay. The run over
the list, the failures file and the exit status are flow extraction's (``flow/video_run.py``);
with several workers, videos run on ``flow.pool``'s processes, each building its own extractor.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from flow.extract import check_writable
from flow.ownership import completed_file
from flow.stages import usable_cores
from flow.summary import RunTotals
from flow.video_run import Job, Skipped, claimed, plan_jobs, pooled, run_jobs
from flow.videos import video_id
from inference.feature_extractor import FeatureExtractor, VideoFeatures

TIMESTAMPS = "timestamps"
ARRAYS = ("rgb", "flow", "concat")  # every array a video may have: a killed run's settings may differ from this one's


def output_path(out_root: Path | str, video_id: str, name: str) -> Path:
    """``<out_root>/<video_id>_<name>.npy``: ``name`` a stream (``rgb``, ``flow``, ``concat``) or ``timestamps``."""
    return Path(out_root) / f"{video_id}_{name}.npy"


@dataclass(frozen=True)
class FeatureResult:
    """One video's features written: snippets, seconds of video covered, bytes, wall seconds."""

    snippets: int
    video_seconds: float
    bytes_written: int
    seconds: float


@dataclass
class FeatureSummary(RunTotals):
    """Totals of a features run."""

    snippets: int = 0
    video_seconds: float = 0.0

    def add(self, result: FeatureResult) -> None:
        self.done += 1
        self.snippets += result.snippets
        self.video_seconds += result.video_seconds
        self.bytes_written += result.bytes_written

    def details(self) -> list[str]:
        rate = self.wall_seconds / (self.video_seconds / 60) if self.video_seconds > 0 else 0.0
        return [f"snippets: {self.snippets}, video: {self.video_seconds / 60:.1f} min, "
                f"written: {self.bytes_written / 2**20:.1f} MiB",
                f"wall time: {self.wall_seconds:.1f} s, {rate:.1f} s per minute of video"]


def _save(path: Path, array: np.ndarray) -> int:
    with completed_file(path) as partial, open(partial, "wb") as file:
        np.save(file, array)
        file.flush()
        os.fsync(file.fileno())  # the name says "complete" only once the bytes are on disk
    return path.stat().st_size


def write_features(features: VideoFeatures, out_root: Path | str, video_id: str) -> int:
    """Write one video's arrays (module docstring), the timestamps last; returns the bytes written."""
    stamps = output_path(out_root, video_id, TIMESTAMPS)
    stamps.parent.mkdir(parents=True, exist_ok=True)
    written = sum(_save(output_path(out_root, video_id, name), array.astype(np.float32, copy=False))
                  for name, array in features.features.items())
    return written + _save(stamps, features.timestamps.astype(np.float64, copy=False))


class FeatureWorker:
    """Extracts and writes jobs with one extractor; returns a FeatureResult, Skipped or a failure reason."""

    def __init__(self, extractor: FeatureExtractor, out_root: Path):
        self.extractor, self.out_root = extractor, out_root

    def __call__(self, job: Job) -> FeatureResult | Skipped | str:
        vid = video_id(job.listed)
        # The arrays too: a writer killed before its timestamps leaves their temporaries behind.
        arrays = [output_path(self.out_root, vid, name) for name in ARRAYS]
        return claimed(job, lambda: self._extract(job), others=arrays)

    def _extract(self, job: Job) -> FeatureResult:
        started = time.perf_counter()
        vid = video_id(job.listed)
        features = self.extractor.extract(job.source, vid)
        for note in features.notes:
            tqdm.write(f"note: {job.listed}: {note}", file=sys.stderr)
        written = write_features(features, self.out_root, vid)
        return FeatureResult(len(features.timestamps), features.duration, written, time.perf_counter() - started)


def _process_worker(build: Callable[[], FeatureExtractor], out_root: Path, workers: int) -> FeatureWorker:
    """One of ``workers`` worker processes' worker: its share of the cores, its own extractor."""
    torch.set_num_threads(max(1, usable_cores() // workers))
    return FeatureWorker(build(), out_root)


def _outcomes(jobs: Sequence[Job], build: Callable[[], FeatureExtractor], out_root: Path,
              workers: int) -> Iterator[tuple[Job, FeatureResult | Skipped | str]]:
    if workers == 1:  # in this process: no pool to start, the network built once
        worker = FeatureWorker(build(), out_root)
        yield from ((job, worker(job)) for job in jobs)
        return
    yield from pooled(jobs, partial(_process_worker, build, out_root, workers), workers,
                      "extracting features of")


def extract_features_many(video_root: Path | str, videos: Sequence[str], out_root: Path | str,
                          build: Callable[[], FeatureExtractor], workers: int = 1,
                          failures_file: Path | str | None = None, progress: bool = True) -> FeatureSummary:
    """Features of ``videos`` (paths relative to ``video_root``) under ``out_root`` (module docstring).

    Args:
        video_root: the videos' root.
        videos: the listed paths.
        out_root: where the arrays go.
        build: makes the extractor (picklable when ``workers`` > 1: it runs in each worker).
        workers: worker processes; 1 runs in this process.
        failures_file: where failed videos are listed (``path<TAB>reason``).
        progress: a progress bar.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    started = time.perf_counter()
    out_root = Path(out_root)
    check_writable(out_root)
    summary = FeatureSummary(failures_file=Path(failures_file) if failures_file else None)
    jobs = plan_jobs(videos, video_root, out_root, lambda vid: f"{vid}_{TIMESTAMPS}.npy",
                     lambda job: job.target.is_file(), summary)
    run_jobs(jobs, _outcomes(jobs, build, out_root, workers), summary, "features", started, progress,
             rate=lambda seconds: {"video min/h": f"{summary.video_seconds / 60 / seconds * 3600:.0f}"})
    return summary
