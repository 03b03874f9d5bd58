"""The GPU flow engine's table of ``benchmarks/flow_speed.py``: batched ``tvl1_torch`` and
batched RAFT against OpenCV's TV-L1, on a CPU or a CUDA device.

Input: the first frames of each sample video re-encoded (H.264) at ``--engine-size``
(320x240 by default, UCF-101's frames: 341x256 after the tool's short-side resize), so
that every pair has one size and a batch fills across videos, as on UCF-101. The clips
are copied until there are ``--engine-pairs`` pairs.

Per row:

- bare pairs/s: the algorithm's ``batch`` alone, on frames decoded beforehand and already
  on the device, ``--batch`` pairs a call (after a warm-up call, synchronized);
- tool pairs/s: ``flow.extract.extract_many`` end to end on the same clips (decode,
  resize, flow, quantize, JPEG, write) with ``batch`` (``flow/batched.py``); bare and tool
  passes alternate ``--repeats`` times and each keeps its fastest;
- CPU ms per pair of those passes (all threads of the process): on a busy machine the
  wall clock says how much of the cores the process got, CPU time what the work costs;
- time per pair against OpenCV's TV-L1 (bare, one thread, on the CPU): the goal on a CPU
  is tvl1_torch within 3x;
- EPE to OpenCV TV-L1: mean end-point error against OpenCV's flow on the pairs of the
  reference clips (the first ``--engine-reference-frames`` frames of each video);
- EPE to truth: on a real frame warped by a known smooth flow (``flow/known_flow.py``),
  on the interior. RAFT with random weights leaves both EPE columns blank (meaningless).

On a CPU torch runs on one thread per instance, and OpenCV on one thread too: on a busy
2-core machine torch's second thread made tvl1_torch 17x slower.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from table import Report, progress, ratio

from flow.algorithms import FlowAlgorithm, create_algorithm
from flow.extract import ExtractionConfig, extract_many, open_video
from flow.known_flow import KnownFlow, end_point_error, mandelbrot_pair

# Per device (and --quick): clip lengths (frames), pairs to time, batch sizes, RAFT precisions.
ENGINE_DEFAULTS = {
    "cpu": {"engine_frames": 5, "engine_reference_frames": 5, "engine_pairs": 12, "batch": "4",
            "raft_precisions": "fp32"},
    "cuda": {"engine_frames": 65, "engine_reference_frames": 5, "engine_pairs": 1024, "batch": "8,32",
             "raft_precisions": "fp32,bf16"},
    "quick": {"engine_frames": 3, "engine_reference_frames": 3, "engine_pairs": 4, "batch": "2",
              "raft_precisions": "fp32"},
}  # fmt: skip
ENGINE_ALGORITHMS = ("tvl1_torch", "raft")
COLUMNS = ["algorithm", "device", "batch", "pairs", "bare pairs/s", "tool pairs/s", "tool vs bare",
           "bare CPU ms/pair", "tool CPU ms/pair", "time/pair vs OpenCV tvl1", "EPE to OpenCV tvl1 px",
           "EPE to truth px"]  # fmt: skip


class BenchmarkError(Exception):
    """The benchmark cannot run as asked; the message says what to do."""


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    def per_device(name: str) -> str:
        return "(default " + ", ".join(f"{key} {values[name]}" for key, values in ENGINE_DEFAULTS.items()) + ")"

    group = parser.add_argument_group("GPU flow engine table (batched tvl1_torch and RAFT)")
    group.add_argument("--engine", default=",".join(ENGINE_ALGORITHMS),
                       help="comma-separated batched algorithms of the engine table, '' for none; raft needs "
                       "--raft-weights (default %(default)s)")
    group.add_argument("--engine-only", action="store_true", help="only the engine table")
    group.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="the engine's device; auto: cuda when torch sees one")
    group.add_argument("--batch", help=f"comma-separated batch sizes {per_device('batch')}")
    group.add_argument("--engine-size", default="320x240",
                       help="WxH the clips are re-encoded at before the tool's resize (default %(default)s)")
    group.add_argument("--engine-frames", type=int, help=f"frames per clip {per_device('engine_frames')}")
    group.add_argument("--engine-pairs", type=int, help=f"pairs timed, clips copied to reach it "
                       f"{per_device('engine_pairs')}")
    group.add_argument("--engine-reference-frames", type=int, help="frames per clip of OpenCV's reference row "
                       f"(on the CPU) {per_device('engine_reference_frames')}")
    group.add_argument("--raft-precisions", help=f"comma-separated fp32,bf16 {per_device('raft_precisions')}")


def engine_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda, but torch sees no CUDA device (--device auto or cpu)")
    return choice


def check_engine_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill the per-device defaults and refuse what cannot run."""
    unknown = [name for name in engine_algorithms(args) if name not in ENGINE_ALGORITHMS]
    if unknown:
        parser.error(f"--engine: unknown {unknown}; known: {', '.join(ENGINE_ALGORITHMS)}")
    if args.engine_only and not engine_algorithms(args):
        parser.error("--engine-only with --engine naming none")
    try:
        width, height = (int(side) for side in args.engine_size.lower().split("x"))
    except ValueError:
        parser.error(f"--engine-size must be WxH, got {args.engine_size!r}")
    if min(width, height) < 16:
        parser.error(f"--engine-size: {args.engine_size} is too small (16 px at least)")
    args.engine_size = (width, height)
    # The device decides the defaults, so it is resolved here (torch is imported only now).
    try:
        args.device = engine_device(args.device) if engine_algorithms(args) else "cpu"
    except BenchmarkError as error:
        parser.error(str(error))
    defaults = ENGINE_DEFAULTS["quick" if args.quick and args.device == "cpu" else args.device]
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.batch = [int(size) for size in str(args.batch).split(",")]
    args.raft_precisions = [precision for precision in args.raft_precisions.split(",") if precision]
    if set(args.raft_precisions) - {"fp32", "bf16"}:
        parser.error(f"--raft-precisions: fp32 and/or bf16, got {','.join(args.raft_precisions)}")
    if min(args.batch) < 1:
        parser.error("--batch sizes must be >= 1")
    if args.engine_frames < 2 or args.engine_reference_frames < 2:
        parser.error("--engine-frames and --engine-reference-frames must be at least 2")
    if args.engine_pairs < 1:
        parser.error("--engine-pairs must be at least 1")


def engine_algorithms(args: argparse.Namespace) -> list[str]:
    return [name for name in args.engine.split(",") if name]


def encode_clip(video: Path, clip: Path, frames: int, size: tuple[int, int]) -> None:
    """The first ``frames`` frames of ``video`` scaled to ``size`` (W, H), re-encoded as H.264."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise BenchmarkError("the engine table needs ffmpeg to encode its clips (apt-get install ffmpeg)")
    command = [ffmpeg, "-v", "error", "-y", "-i", str(video), "-map", "0:v:0", "-vf", f"scale={size[0]}:{size[1]}",
               "-frames:v", str(frames), "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(clip)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchmarkError(f"ffmpeg could not encode a clip of {video}: {result.stderr.strip()}")


@dataclass
class Clips:
    """Clip files in one folder (``names`` relative to it) and their decoded pairs."""

    folder: Path
    names: list[str]
    pairs: int
    gray: list[tuple[np.ndarray, np.ndarray]]
    rgb: list[tuple[np.ndarray, np.ndarray]]

    def frames(self, color: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.rgb if color else self.gray


def make_clips(videos: list[Path], frames: int, size: tuple[int, int], pairs: int, folder: Path,
               config: ExtractionConfig) -> Clips:  # fmt: skip
    """Clips of ``videos``, copied until they hold at least ``pairs`` pairs, decoded as the tool decodes them."""
    folder.mkdir(parents=True)
    originals = []
    for k, video in enumerate(videos):
        originals.append(folder / f"{k}_{video.stem}.mp4")
        encode_clip(video, originals[-1], frames, size)
    decoded = [[(frame.gray, frame.rgb) for frame in open_video(clip, config, gray=True, rgb=True)] for clip in originals]
    per_copy = sum(len(frames) - 1 for frames in decoded)
    if per_copy < 1:
        raise BenchmarkError(f"the clips of {', '.join(v.name for v in videos)} hold no frame pair")
    names, gray, rgb = [], [], []
    for copy in range(math.ceil(pairs / per_copy)):
        for original, clip_frames in zip(originals, decoded):
            name = original.name if copy == 0 else f"copy{copy}_{original.name}"
            if copy:
                shutil.copyfile(original, folder / name)
            names.append(name)
            gray += [(a[0], b[0]) for a, b in zip(clip_frames, clip_frames[1:])]
            rgb += [(a[1], b[1]) for a, b in zip(clip_frames, clip_frames[1:])]
    return Clips(folder, names, len(gray), gray, rgb)


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """torch and OpenCV on ``count`` threads (None: left as they are)."""
    import torch

    if count is None:
        yield
        return
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(count)
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def device_batches(pairs: list[tuple[np.ndarray, np.ndarray]], batch: int, device: str) -> list[tuple]:
    """``pairs`` stacked ``batch`` at a time into (first, second) tensors on ``device``."""
    import torch

    def on_device(frames: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(frames)).to(device)

    chunks = [pairs[start : start + batch] for start in range(0, len(pairs), batch)]
    return [(on_device([first for first, _ in chunk]), on_device([second for _, second in chunk])) for chunk in chunks]


def timed_batches(algorithm: FlowAlgorithm, batches: list[tuple], device: str) -> tuple[float, list[np.ndarray]]:
    """Seconds of ``algorithm.batch`` over ``batches`` (synchronized), and the flows."""
    synchronize(device)
    started = time.perf_counter()
    outputs = [algorithm.batch(first, second) for first, second in batches]  # type: ignore[attr-defined]
    synchronize(device)
    seconds = time.perf_counter() - started
    return seconds, [flow.cpu().numpy() for output in outputs for flow in output]


@dataclass
class Rates:
    """Bare and tool pairs/s, each the best of several passes, and the CPU ms per pair (all
    threads of the process) of those passes: on a busy machine the wall clock says how
    much of the cores the process got, CPU time what the work costs."""

    bare: float = 0.0
    tool: float = 0.0
    bare_cpu_ms: float = float("nan")
    tool_cpu_ms: float = float("nan")


def best_rates(repeats: int, pairs: int, bare_pass: Callable[[], float], tool_pass: Callable[[int], float]) -> Rates:
    """``repeats`` alternating bare and tool passes; ``bare_pass`` returns its seconds,
    ``tool_pass(n)`` its pairs/s."""
    rates = Rates()
    for n in range(repeats):
        cpu = time.process_time()
        bare = pairs / bare_pass()
        if bare > rates.bare:
            rates.bare, rates.bare_cpu_ms = bare, 1000 * (time.process_time() - cpu) / pairs
        cpu = time.process_time()
        tool = tool_pass(n)
        if tool > rates.tool:
            rates.tool, rates.tool_cpu_ms = tool, 1000 * (time.process_time() - cpu) / pairs
    return rates


def tool_rate(clips: Clips, config: ExtractionConfig, out: Path) -> float:
    """Pairs per second of extract_many over the clips, end to end."""
    summary = extract_many(clips.folder, clips.names, out, config, progress=False)
    if summary.failures or summary.pairs != clips.pairs:
        reasons = "; ".join(f"{failure.video}: {failure.reason}" for failure in summary.failures)
        raise BenchmarkError(f"{config.algorithm}: the tool made {summary.pairs} of {clips.pairs} pairs {reasons}")
    return summary.pairs_per_second


def mean_epe(flows: list[np.ndarray], references: list[np.ndarray]) -> float:
    return float(np.mean([end_point_error(flow, reference) for flow, reference in zip(flows, references)]))


def rate_cells(rates: Rates, opencv: Rates) -> list[object]:
    """The row's cells from "bare pairs/s" to "time/pair vs OpenCV tvl1"."""
    return [rates.bare, rates.tool, ratio(rates.tool / rates.bare), rates.bare_cpu_ms, rates.tool_cpu_ms,
            ratio(opencv.bare / rates.bare)]  # fmt: skip


@dataclass(frozen=True)
class Measured:
    rates: Rates
    to_opencv: float | None = None  # px; None: not measured
    to_truth: float | None = None


def measure_row(config: ExtractionConfig, repeats: int, clips: Clips, reference: Clips, references: list[np.ndarray],
                known: KnownFlow | None, out: Path) -> Measured:  # fmt: skip
    """One batched algorithm's row: its rates on ``clips``; unless ``known`` is None (flow that
    means nothing), its flow on ``reference``'s pairs against OpenCV's ``references``, and on
    the ``known`` pair against the truth."""
    algorithm = create_algorithm(config.algorithm, **config.params)
    device, color = config.params["device"], algorithm.needs_color
    batches = device_batches(clips.frames(color), config.batch, device)
    algorithm.batch(*batches[0])  # type: ignore[attr-defined]  # set-up: cuDNN's choices, torch.compile
    flows: list[np.ndarray] = []

    def bare_pass() -> float:
        seconds, flows[:] = timed_batches(algorithm, batches, device)
        return seconds

    rates = best_rates(repeats, clips.pairs, bare_pass, lambda n: tool_rate(clips, config, out / str(n)))
    if known is None:
        return Measured(rates)
    if clips is not reference:
        flows = timed_batches(algorithm, device_batches(reference.frames(color), config.batch, device), device)[1]
    pair = known.rgb() if color else (known.prev, known.nxt)
    return Measured(rates, mean_epe(flows, references), known.error(algorithm(*pair)))


@dataclass(frozen=True)
class Row:
    label: str
    algorithm: str
    params: dict
    batch: int
    accuracy: bool  # False: random weights, whose flow means nothing


def engine_rows(args: argparse.Namespace, raft_weights: str | None, random_weights: bool) -> list[Row]:
    rows = []
    for name in engine_algorithms(args):
        if name == "tvl1_torch":
            rows += [Row("tvl1_torch", name, {"device": args.device}, batch, True) for batch in args.batch]
        elif raft_weights:
            for precision in args.raft_precisions:
                params = {"weights": raft_weights, "model": args.raft_model, "device": args.device,
                          "precision": precision}  # fmt: skip
                rows += [Row(f"raft-{args.raft_model} {precision}", name, params, batch, not random_weights)
                         for batch in args.batch]  # fmt: skip
    return rows


def engine_table(report: Report, args: argparse.Namespace, videos: list[Path], scratch: Path,
                 raft_weights: str | None, random_weights: bool) -> None:  # fmt: skip
    """Measure and print the engine table (see the module's docstring)."""
    import torch

    device = args.device
    base = ExtractionConfig(short_side=args.short_side, bound=args.bound)
    size = args.engine_size
    progress(f"engine: clips at {size[0]}x{size[1]} ...")
    reference = make_clips(videos, args.engine_reference_frames, size, 1, scratch / "engine_reference", base)
    same_inputs = device == "cpu" and args.engine_frames == args.engine_reference_frames and \
        args.engine_pairs <= reference.pairs
    clips = reference if same_inputs else make_clips(videos, args.engine_frames, size, args.engine_pairs,
                                                     scratch / "engine_clips", base)
    height, width = clips.gray[0][0].shape
    known = mandelbrot_pair(width, height)
    rows = engine_rows(args, raft_weights, random_weights)
    if "raft" in engine_algorithms(args) and not raft_weights:
        report.note("(raft: not measured; pass --raft-weights PATH, or random for speed alone)")

    gpu = f", on {torch.cuda.get_device_name()}" if device == "cuda" else ""
    table = report.table(f"GPU flow engine: batched algorithms vs OpenCV TV-L1 ({width}x{height}{gpu})", COLUMNS)
    # OpenCV's TV-L1, the reference: one thread, the per-video tool path.
    with cpu_threads(1):
        progress(f"engine: OpenCV tvl1, {reference.pairs} pairs on one thread ...")
        solver = create_algorithm("tvl1")
        references: list[np.ndarray] = []

        def opencv_pass() -> float:
            started = time.perf_counter()
            references[:] = [solver(first, second) for first, second in reference.gray]
            return time.perf_counter() - started

        config = ExtractionConfig(short_side=args.short_side, bound=args.bound, threads=1)
        opencv = best_rates(args.repeats, reference.pairs, opencv_pass,
                            lambda n: tool_rate(reference, config, scratch / "engine_out" / f"opencv{n}"))
        truth = known.error(solver(known.prev, known.nxt))
    table.add("tvl1 (OpenCV)", "cpu", None, reference.pairs, *rate_cells(opencv, opencv), 0.0, truth)

    with cpu_threads(1 if device == "cpu" else None):
        for n, row in enumerate(rows):
            progress(f"engine: {row.label}, batch {row.batch}, {clips.pairs} pairs on {device} ...")
            config = ExtractionConfig(algorithm=row.algorithm, params=row.params, short_side=args.short_side,
                                      bound=args.bound, batch=row.batch)  # fmt: skip
            m = measure_row(config, args.repeats, clips, reference, references, known if row.accuracy else None,
                            scratch / "engine_out" / str(n))  # fmt: skip
            table.add(row.label, device, row.batch, clips.pairs, *rate_cells(m.rates, opencv), m.to_opencv,
                      m.to_truth)  # fmt: skip
            if device == "cuda":
                torch.cuda.empty_cache()
    notes = [f"input: the first frames of {', '.join(v.name for v in videos)} re-encoded at {size[0]}x{size[1]}, "
             f"short side {args.short_side or 'kept'}; OpenCV's row on {reference.pairs} pairs "
             f"({args.engine_reference_frames}-frame clips), the others on {clips.pairs}; "
             f"best of {args.repeats} alternating bare and tool passes.",
             "bare: the batched call alone on pre-decoded frames on the device; tool: extract_many end to end "
             "(--batch); time/pair vs OpenCV tvl1: bare time per pair over OpenCV's (one thread).",
             f"EPE to OpenCV tvl1: on the {reference.pairs} pairs of OpenCV's row; EPE to truth: "
             f"flow/known_flow.py's mandelbrot pair, interior."]
    if device == "cpu":
        notes.append("cpu: torch and OpenCV on one thread per instance.")
    if random_weights and any(row.algorithm == "raft" for row in rows):
        notes.append("RAFT with random weights (the real state-dict format): speed only, EPE left blank.")
    notes.append("goals: H200 at 341x256, tvl1_torch tool >= 300 pairs/s, raft-large tool >= 0.8x bare; "
                 "cpu, tvl1_torch time/pair <= 3x OpenCV's.")
    for line in notes:
        report.note(line)
