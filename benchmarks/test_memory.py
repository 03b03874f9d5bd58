"""Host memory and CPU time of testing one 250-view video (25 positions x 10 crops), ours
against the bare network call.

Two paths score the same test sample with the same random network:

- *ours*: the worker builds the uint8 item (``dataset[0]``: 25 positions at their stored
  size and the crop boxes, 44 MB for a flow video); scoring finishes it into ``TestViews``,
  which ``lightning_modules.evaluation.views.forward_views`` cuts and converts ``chunk`` views at a
  time (on the device in a real test, on the CPU here);
- *bare*: every view materialised as float32 on the host (``TestViews.materialise``:
  250 x 20 x 224 x 224 float32 for a flow video, 0.93 GiB) and one ``network(views)`` call,
  what a plain test loop does.

For each configuration and path a fresh process:

1. loads torch, a ``models.ResNetStream`` (random weights from a fixed seed, eval mode)
   and the project's test dataset. Its resident size is the *baseline*;
2. builds the sample as that path does. Reports the peak RSS while building (and that
   peak minus the baseline: the host memory a test video costs the worker) and its CPU
   seconds (``time.process_time``, all threads);
3. scores it under ``torch.no_grad()``. Reports the peak RSS while scoring;
   *activations* = that peak minus the RSS just before scoring. The video's scores
   (softmax averaged over the views) of both paths must agree: the ratio table prints
   their largest difference.

Between steps 2 and 3 the process calls glibc's ``malloc_trim(0)`` (glibc would otherwise
serve the activations from the freed temporaries of building, hiding them). Peaks are
``ru_maxrss``, reset between steps with ``echo 5 > /proc/self/clear_refs``; Linux only.
The parent imports neither torch nor the project (a child's ``ru_maxrss`` starts from its
parent's peak), so the data is generated in a child of its own.

Data: a synthetic UCF-101 of 6 videos (320x240 XVID) with DIS flow of its test videos
stored at short side 256, in a temporary folder. ``--json FILE`` writes the tables.

Run:  python benchmarks/test_memory.py              (full: 6 processes, about 5 minutes on 2 cores)
      python benchmarks/test_memory.py --quick      (smoke run: 64x64 crops, 2x10 views, ResNet-18)
      python benchmarks/test_memory.py --json memory.json
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Literal, TypeVar

from table import (
    Cell,
    Report,
    Table,
    add_json_option,
    describe_machine,
    fixed,
    joined,
    progress,
    ratio,
    significant,
)

MIB = 2**20
NUM_CLASSES = 101
FLOW_FIELDS = 10  # L: a flow stack has 2L channels
VIDEO_DIR, ANNOTATION_DIR, FLOW_DIR = "UCF-101", "ucfTrainTestlist", "flow"
Modality = Literal["rgb", "flow"]
SamplePath = Literal["ours", "bare"]  # uint8 positions cut per chunk, or every view as float32 in one forward
PATHS: tuple[SamplePath, ...] = ("bare", "ours")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Row:
    """One configuration: a stream (``depth``, ``modality``) scoring one sample ``chunk`` views at a time."""

    depth: int
    modality: Modality
    chunk: int


@dataclass(frozen=True)
class Settings:
    """Sizes of the data and the configurations; ``FULL`` and ``QUICK`` below."""

    video_size: tuple[int, int]  # (width, height) of the generated videos
    frames: int  # per generated video
    short_side: int  # flow is stored at this short side; frames are resized to it
    crop: int
    positions: int  # test positions, x 10 crops
    rows: tuple[Row, ...]

    @property
    def views(self) -> int:
        return self.positions * 10


FULL = Settings(video_size=(320, 240), frames=40, short_side=256, crop=224, positions=25,
                rows=(Row(18, "flow", 10), Row(50, "flow", 50), Row(18, "rgb", 50)))
QUICK = Settings(video_size=(96, 72), frames=16, short_side=72, crop=64, positions=2,
                 rows=(Row(18, "flow", 20), Row(18, "rgb", 5)))


@dataclass(frozen=True)
class Measurement:
    """What one child process saw, in MiB and seconds."""

    shape: tuple[int, ...]  # of the sample scoring takes: float32 views (bare), uint8 positions (ours)
    sample: float  # the tensor's own size
    baseline: float  # RSS with torch, the network and the dataset loaded
    load_peak: float  # peak RSS while loading them
    build_peak: float  # peak RSS while building the sample
    held: float  # RSS after building and malloc_trim, just before scoring
    score_peak: float  # peak RSS while scoring
    build_seconds: float
    build_cpu_seconds: float  # process CPU time (all threads) while building
    score_seconds: float
    scores: tuple[float, ...]  # the video's class scores: softmax averaged over its views

    @property
    def activations(self) -> float:
        return self.score_peak - self.held

    @property
    def building(self) -> float:
        """Host memory the sample costs its worker: peak building minus baseline."""
        return self.build_peak - self.baseline

    @property
    def process_peak(self) -> float:
        return max(self.load_peak, self.build_peak, self.score_peak)


# Memory of this process.


def peak_mib() -> float:
    """``ru_maxrss`` in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """The resident set size now, from /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / MIB


def release_freed_memory() -> None:
    """Return the heap memory glibc holds for reuse to the system (``malloc_trim(0)``)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak() -> None:
    """Reset this process's RSS high-water mark (and so ``ru_maxrss``) to the RSS now."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


# Work done in fresh child processes.


def in_fresh_process(function: Callable[..., Result], *args: object) -> Result:
    """``function(*args)`` in a new spawned interpreter that ends with it."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def prepare_data(root: Path, settings: Settings) -> str:
    """Generate a small synthetic UCF-101 (2 classes x 3 videos) under ``root``, extract the DIS flow of
    its split-1 test videos; describe the data."""
    from datamodules.synthetic import generate
    from flow.extract import ExtractionConfig, extract_many, list_videos
    from flow.meta import read_meta

    generate(root, layout="ucf101", num_classes=2, videos_per_class=3, num_frames=settings.frames,
             size=settings.video_size)
    videos = list_videos(root / VIDEO_DIR, root / ANNOTATION_DIR / "testlist01.txt")  # only test videos are read
    summary = extract_many(root / VIDEO_DIR, videos, root / FLOW_DIR,
                           ExtractionConfig(algorithm="dis", short_side=settings.short_side), progress=False)
    if summary.failures:
        raise RuntimeError(f"flow extraction failed: {summary.failures}")
    meta = read_meta(root / FLOW_DIR / Path(videos[0]).with_suffix(""))
    width, height = settings.video_size
    return (f"data: synthetic UCF-101 videos ({width}x{height}, {settings.frames} frames); "
            f"{meta.algorithm} flow stored as {meta.width}x{meta.height} JPEG")


def measure(root: Path, settings: Settings, row: Row, path: SamplePath, threads: int) -> Measurement:
    """Load, build one test sample as ``path`` does, score it; the memory and time of each step."""
    import torch

    from datamodules.annotations import UCF101
    from datamodules.batch import collate_test
    from datamodules.datamodule import VideoDataModule
    from datamodules.settings import EvalProtocol, Roots
    from datamodules.transforms import Augmentation
    from lightning_modules.evaluation.views import forward_views, video_scores
    from models import ResNetStream

    torch.set_num_threads(threads)
    torch.manual_seed(0)  # the same random network in both paths' processes: their scores must agree
    channels = 2 * FLOW_FIELDS if row.modality == "flow" else 3
    network = ResNetStream(NUM_CLASSES, depth=row.depth, in_channels=channels, modality=row.modality).eval()
    module = VideoDataModule(UCF101(str(root / ANNOTATION_DIR)),
                             Roots(str(root / VIDEO_DIR), str(root / FLOW_DIR), cache_dir=str(root / "index_cache")),
                             augment=Augmentation(short_side=settings.short_side),
                             test=EvalProtocol(positions=settings.positions))
    module.set_input_specs({row.modality: replace(network.input_spec, size=settings.crop)})
    dataset = module.make_dataset("test")
    load_peak, baseline = peak_mib(), rss_mib()

    reset_peak()
    started, cpu_started = time.perf_counter(), time.process_time()
    item = dataset[0]  # uint8 positions at their stored size and the crop boxes
    if path == "bare":  # every view as float32 on the host
        sample = dataset.finish(collate_test([item]))[row.modality].materialise()
        del item
    else:  # the uint8 item; views are cut per chunk while scoring
        sample = item[row.modality]
    build_cpu_seconds = time.process_time() - cpu_started
    build_seconds = time.perf_counter() - started
    build_peak = peak_mib()
    release_freed_memory()
    held = rss_mib()

    reset_peak()
    started = time.perf_counter()
    with torch.no_grad():
        if path == "bare":
            logits = network(sample[0]).unsqueeze(0)  # one video: (1, V, classes)
        else:
            logits = forward_views(network, dataset.finish(collate_test([item]))[row.modality], row.chunk)
        scores = video_scores(logits)[0]
    score_seconds = time.perf_counter() - started
    shape = tuple(sample.shape[1:] if path == "bare" else sample.shape)  # bare: (1, V, ...), one video
    return Measurement(shape, sample.nbytes / MIB, baseline, load_peak, build_peak, held, peak_mib(), build_seconds,
                       build_cpu_seconds, score_seconds, tuple(scores.tolist()))


# The report.


def machine(threads: int) -> dict[str, object]:
    with open("/proc/meminfo") as meminfo:
        total = int(meminfo.readline().split()[1]) / 2**20
    return describe_machine(ram_gib=round(total, 1), torch_threads_per_child=threads)


def stream_name(row: Row) -> str:
    return f"ResNet-{row.depth} {row.modality}"


def memory_table(report: Report) -> Table:
    return report.table("Host memory and time of testing one video, bare network call and ours", [
        "stream", "path", "sample scored", "chunk", "baseline RSS MiB", "sample MiB",
        "peak building MiB", "building MiB over baseline", "build CPU s", "RSS before scoring MiB",
        "peak scoring MiB", "activations MiB", "activations per view in chunk MiB", "process peak MiB",
        "s/video build + score"])


def add_measurement(table: Table, row: Row, path: SamplePath, m: Measurement) -> None:
    """MiB are whole (the kernel counts KiB); per-view MiB and seconds at 3 significant digits."""
    dtype = "float32" if path == "bare" else "uint8"
    chunk = m.shape[0] if path == "bare" else row.chunk
    table.add(stream_name(row), path, f"{'x'.join(map(str, m.shape))} {dtype}", chunk, fixed(m.baseline, 0),
              fixed(m.sample, 0), fixed(m.build_peak, 0), fixed(m.building, 0), m.build_cpu_seconds,
              fixed(m.held, 0), fixed(m.score_peak, 0), fixed(m.activations, 0), m.activations / chunk,
              fixed(m.process_peak, 0), joined([m.build_seconds, m.score_seconds], " + "))


def ratio_table(report: Report) -> Table:
    return report.table("Bare / ours, per configuration", [
        "stream", "chunk", "building MiB over baseline bare / ours", "host memory bare / ours",
        "build CPU s bare / ours", "build CPU bare / ours", "peak scoring MiB bare / ours",
        "process peak MiB bare / ours", "max score difference"])


def add_ratio(table: Table, row: Row, bare: Measurement, ours: Measurement) -> None:
    difference = max(abs(b - a) for b, a in zip(bare.scores, ours.scores))
    table.add(stream_name(row), row.chunk, pair(bare.building, ours.building, 0),
              ratio(bare.building / ours.building), pair(bare.build_cpu_seconds, ours.build_cpu_seconds),
              ratio(bare.build_cpu_seconds / ours.build_cpu_seconds), pair(bare.score_peak, ours.score_peak, 0),
              pair(bare.process_peak, ours.process_peak, 0), difference)


def pair(bare: float, ours: float, decimals: int | None = None) -> Cell:
    """``bare / ours`` in one cell: whole MiB at ``decimals``, else 3 significant digits."""
    if decimals is None:
        return joined([bare, ours], " / ")
    return Cell([bare, ours], f"{bare:.{decimals}f} / {ours:.{decimals}f}")


def format_bound(results: Sequence[tuple[Row, Measurement, Measurement]], settings: Settings) -> str:
    """The bound the measurements support. Per flow stream, activations(chunk) <= a + b x (chunk - c0): a is
    measured at the smallest chunk c0, b is the steepest slope from there to any other measured chunk. Our
    path's activations include the chunk's cut and converted views."""
    flow = [(row, ours) for row, _, ours in results if row.modality == "flow"]
    streams = []
    for depth in sorted({row.depth for row, _ in flow}):
        points = sorted((row.chunk, m.activations) for row, m in flow if row.depth == depth)
        (smallest, fixed), others = points[0], points[1:]
        if others:
            slope = max((activations - fixed) / (chunk - smallest) for chunk, activations in others)
            streams.append(f"ResNet-{depth} {fixed:.0f} + {slope:.1f} x (chunk - {smallest})")
        else:
            streams.append(f"ResNet-{depth} {fixed:.0f} at chunk {smallest} (one chunk measured)")
    factors = [m.building / m.sample for _, m in flow]
    return (f"bound (ours): peak RSS <= max(baseline + {max(factors):.1f} x sample while building it (measured "
            f"{min(factors):.1f}-{max(factors):.1f}x: decoded JPEGs before they are stacked, plus temporaries), "
            f"baseline + sample + activations(min(chunk, views)) while scoring), where activations grow with the "
            f"chunk and not with the number of views: activations(chunk) <= {'; '.join(streams)} MiB; "
            f"the sample is positions x L x 2 x H x W bytes at the stored size (the bare path holds "
            f"views x C x {settings.crop} x {settings.crop} x 4 bytes).")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small crops, few views, ResNet-18")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per child process (default 1: on a shared CPU more threads wait on "
                             "each other at every layer, worst with small chunks)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if not os.access("/proc/self/clear_refs", os.W_OK):
        raise SystemExit("this benchmark needs Linux with a writable /proc/self/clear_refs (to reset ru_maxrss)")
    settings = QUICK if args.quick else FULL
    report = Report("test_memory", machine(args.threads), args.json)
    with tempfile.TemporaryDirectory(prefix="test_memory_") as folder:
        root = Path(folder)
        report.note(in_fresh_process(prepare_data, root, settings))
        report.note("bare: every view as float32 on the host (item + dataset.finish + materialise), one "
                    "network(views) call; ours: the uint8 item, the views cut and converted per chunk while scoring")
        table = memory_table(report)
        results = []
        for row in settings.rows:
            measured = {}
            for path in PATHS:
                progress(f"measuring {stream_name(row)}, {settings.views} views, chunk {row.chunk}, {path} ...")
                measured[path] = in_fresh_process(measure, root, settings, row, path, args.threads)
                add_measurement(table, row, path, measured[path])
            results.append((row, measured["bare"], measured["ours"]))
        ratios = ratio_table(report)
        for result in results:
            add_ratio(ratios, *result)
    report.note(f"parent process peak (not counted above): {peak_mib():.0f} MiB; torch weights random (seed 0), "
                "eval, no_grad")
    report.note(format_bound(results, settings))
    report.finish()


if __name__ == "__main__":
    main()
