"""Feature extraction end to end against its bare steps, on the same videos in one run.

End to end: ``inference.feature_run.extract_features_many`` over the videos, as ``cli.py
features`` runs it: RGB decoded by the data's reader, flow computed in memory
(``flow.memory_store``: PyAV's gray decode, the algorithm, quantisation and JPEG round trip),
each snippet's views resized, cropped and normalised by the data module's test path, the
networks' pooled pre-logits, and the ``.npy`` files written complete.

Bare steps, each timed alone on the same videos: decoding every frame with the same reader
(``read_frames``), the flow algorithm's calls on the frame pairs (gray frames at the
extraction's short side decoded beforehand, untimed; as many instances on as many threads
as the tool runs), the networks' ``forward_features`` + ``forward_head(pre_logits=True)`` on
inputs of the end-to-end run's shapes and counts (built beforehand, untimed), and
``np.save`` of arrays of the outputs' shapes; video by video, the tool's run and then the bare
steps, so that a change in a shared machine's load hits both. Their sum is what a hand-written loop of
library calls would spend; the end-to-end rate over it is the tool's efficiency (goal on
the CPU: >= 0.85x).

Videos are the synthetic generator's (real MPEG-4 files of moving shapes, its Kinetics layout); the
networks are Inception I3D's, RGB and flow, with random weights (speed does not depend on
them; nothing is downloaded). Prints markdown row by row; ``--json FILE`` writes the table
unrounded with the machine (``benchmarks/table.py``).

Run:  python benchmarks/features_speed.py --json benchmarks/results/features_speed.json
      python benchmarks/features_speed.py --quick          (a few seconds: the test's settings)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from table import Report, add_json_option, describe_machine, progress, ratio

from datamodules.decoding import create_reader
from datamodules.synthetic import generate
from datamodules.transforms import Augmentation
from flow.extraction_config import ExtractionConfig, open_video
from flow.videos import list_videos
from inference.feature_extractor import FeatureExtractor, FeatureSettings
from inference.feature_run import extract_features_many
from inference.features import FlowOnTheFly
from models.inception_i3d import InceptionI3D

COLUMNS = ["step", "seconds", "s per minute of video", "videos per hour", "share of the bare sum"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=3, help="videos (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each video in seconds (default 10)")
    parser.add_argument("--size", default="320x240", help="video frame size WxH (default 320x240, UCF-101's)")
    parser.add_argument("--short-side", type=int, default=256, help="frames and flow resized to this short side")
    parser.add_argument("--input-size", type=int, default=224, help="the networks' crop side (default 224)")
    parser.add_argument("--stack", type=int, default=64, help="frames per snippet (default 64, I3D's)")
    parser.add_argument("--algorithm", default="dis", help="flow algorithm (default dis; tvl1 is the papers')")
    parser.add_argument("--batch", type=int, default=4, help="views per forward (default 4)")
    parser.add_argument("--device", default="cpu", help="where the networks run (default cpu)")
    parser.add_argument("--dir", type=Path, help="where the videos and outputs go (default a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="one half-second 64x48 video, 32-pixel networks, "
                        "stack 8: the test's settings")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.videos, args.seconds, args.size, args.short_side, args.input_size, args.stack = 1, 0.5, "64x48", 48, 32, 8
    try:
        args.width, args.height = (int(side) for side in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size: expected WxH, e.g. 320x240, got {args.size}")
    if min(args.videos, args.stack, args.batch, args.input_size) < 1 or not args.seconds > 0:
        parser.error("--videos, --seconds, --stack, --batch and --input-size must be positive")
    return args


def networks(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"rgb": InceptionI3D(400, frames=args.stack, input_size=args.input_size).eval(),
            "flow": InceptionI3D(400, modality="flow", frames=args.stack, input_size=args.input_size).eval()}


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def bare_decode(paths: list[Path]) -> float:
    reader = create_reader("auto")
    return sum(timed(lambda p=p: reader.read_frames(p, list(range(reader.num_frames(p))))) for p in paths)


def bare_flow(paths: list[Path], config: ExtractionConfig) -> float:
    """The algorithm's calls on every pair, n instances on n threads as the tool runs them."""
    algorithms = config.create_algorithms()
    total = 0.0
    with ThreadPoolExecutor(len(algorithms)) as pool:
        for path in paths:
            gray = [frame.gray for frame in open_video(path, config)]  # untimed: the bare call's input
            pairs = list(zip(gray[:-1], gray[1:]))
            chunks = [pairs[i::len(algorithms)] for i in range(len(algorithms))]
            total += timed(lambda: list(pool.map(lambda a, c: [a(x, y) for x, y in c], algorithms, chunks)))
    return total


def bare_forward(nets: dict[str, torch.nn.Module], snippets: int, args: argparse.Namespace) -> float:
    """The networks on ``snippets`` clips per stream, ``args.batch`` per forward."""
    total = 0.0
    with torch.inference_mode():
        for key, net in nets.items():
            channels = 3 if key == "rgb" else 2
            for first in range(0, snippets, args.batch):
                count = min(args.batch, snippets - first)
                x = torch.randn(count, channels, args.stack, args.input_size, args.input_size, device=args.device)
                total += timed(lambda: net.forward_head(net.forward_features(x), pre_logits=True).cpu())
    return total


def bare_write(out: Path, shapes: list[tuple[int, ...]]) -> float:
    out.mkdir(parents=True, exist_ok=True)
    arrays = [np.zeros(shape, np.float32) for shape in shapes]
    return timed(lambda: [np.save(out / f"{i}.npy", array) for i, array in enumerate(arrays)])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        return run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> int:
    report = Report("features_speed", describe_machine(torch.cuda.get_device_name() if args.device.startswith("cuda")
                                                       else None, threads=torch.get_num_threads()), args.json)
    fps = 25.0
    progress(f"generating {args.videos} videos of {args.seconds} s")
    data = generate(work / "videos", "kinetics", num_classes=2, videos_per_class=max(2, -(-args.videos // 2)),
                    num_frames=round(args.seconds * fps), size=(args.width, args.height), fps=fps)
    videos = list_videos(data.video_root)[:args.videos]
    paths = [data.video_root / video for video in videos]
    nets = networks(args)
    config = ExtractionConfig(algorithm=args.algorithm, short_side=args.short_side)
    settings = FeatureSettings(stack=args.stack, batch=args.batch)
    augmentation = Augmentation(short_side=args.short_side)

    def build() -> FeatureExtractor:
        return FeatureExtractor(nets, settings, augmentation, create_reader("auto"), FlowOnTheFly(config), args.device)

    extractor = build()
    extractor.extract(paths[0], "warm-up")  # allocator, kernels, the reader's first import
    names = {"decode": "decode (reader.read_frames, every frame)", "flow": f"flow ({args.algorithm} calls on every pair)",
             "forward": "forward (RGB and flow I3D, pooled pre-logits)", "write": "write (np.save)"}
    steps = dict.fromkeys(names.values(), 0.0)
    end_to_end, snippets, minutes = 0.0, 0, 0.0
    # Video by video, the tool's run and then the bare steps: a change in the machine's load hits both.
    for video, path in zip(videos, paths):
        progress(f"{video}: end to end, then the bare steps")
        summary = extract_features_many(data.video_root, [video], work / "features", lambda: extractor, progress=False)
        if summary.failed:
            raise SystemExit(f"features_speed: {video}: {summary.failures[0].reason}")
        end_to_end += summary.wall_seconds
        snippets += summary.snippets
        minutes += summary.video_seconds / 60
        steps[names["decode"]] += bare_decode([path])
        steps[names["flow"]] += bare_flow([path], config)
        steps[names["forward"]] += bare_forward(nets, summary.snippets, args)
        steps[names["write"]] += bare_write(work / "bare", [(summary.snippets, 1024)] * 3)
    bare = sum(steps.values())
    table = report.table(f"Feature extraction, {args.videos} videos of {args.seconds:g} s at {args.width}x"
                         f"{args.height}, I3D RGB + flow at {args.input_size} px, stack {args.stack}, "
                         f"{args.algorithm} flow, {args.device}", COLUMNS)

    def row(name: str, seconds: float) -> None:
        table.add(name, seconds, seconds / minutes, 3600 * len(paths) / seconds, ratio(seconds / bare))

    for name, seconds in steps.items():
        row(f"bare: {name}", seconds)
    row("bare steps, summed", bare)
    row("end to end (cli.py features' run)", end_to_end)
    report.note(f"end-to-end rate / bare rate: {bare / end_to_end:.3f}x (goal on the CPU: >= 0.85x); "
                f"{snippets} snippets per stream")
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
