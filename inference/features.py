"""``python cli.py features VIDEO_ROOT OUT (--checkpoint CKPT | --config X.yaml) ...``.

Features of every video under VIDEO_ROOT (or in ``--list``) for temporal localisation,
anomaly detection or video-text work: per stream a float32 T x D array (I3D 1024, ResNet-50
2048; ten crops T x 10 x D; ``--concat`` RGB and flow joined) and the snippets' timestamps,
one set of ``.npy`` files per video (``inference/feature_run.py``). Snippets and what each
network reads of them: ``inference/snippets.py``; the views and the pooling:
``inference/feature_extractor.py``.

The network comes from a checkpoint (its recipe says the data's sizes, decoder and flow
settings), or from a config (``--config``): its networks' ``weights:`` (the I3D port's
Kinetics files, or ImageNet weights inflated), with ``--checkpoint`` for a state dict.
Flow is computed on the fly with the settings the checkpoint's flow was extracted with
(``flow.memory_store``: the same engine, quantisation and JPEG round trip as ``classify``),
or read from an extracted root (``--frames-root``).

Exit status as ``python -m flow extract``'s: 0 every video done or skipped, 1 some failed
(listed in the failures file), 2 bad arguments, 3 the run stopped (output unwritable, disk
full, workers crashing), 130 / 143 on Ctrl-C / SIGTERM (a rerun resumes).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from datamodules.decoding import create_reader
from flow.algorithms import FlowAlgorithm
from flow.extraction_config import ExtractionConfig
from flow.memory_store import MemoryFlowStore
from flow.packed import open_flow_store
from flow.sharding import Shard, parse_shard, process_device, shard_from_env
from flow.store import FolderFlowStore
from flow.video_run import run_command, stoppable
from flow.videos import VIDEO_EXTENSIONS
from inference.feature_extractor import CROPS, FeatureExtractor, FeatureSettings
from inference.feature_run import extract_features_many

if TYPE_CHECKING:
    from inference.load import Loaded
    from inference.recipe import FlowSettings, Recipe

DESCRIPTION = """Extract features of every video under VIDEO_ROOT (or those in --list) into
OUT/<video id>_<stream>.npy (float32, T x D; T x 10 x D with --crops ten) and
OUT/<video id>_timestamps.npy (T x 2 seconds). Finished videos are skipped, so a killed
run resumes by running the same command again."""


class ExtractedFlow:
    """A video's flow read from an extracted root (folders or packs); with ``expected`` (the
    recipe's training flow settings, when known) a video whose meta.json says other flow
    (algorithm, its parameters, bound, step, JPEG quality) is refused rather than fed to the network."""

    def __init__(self, root: Path | str, expected: FlowSettings | None = None):
        if not Path(root).is_dir():
            raise FileNotFoundError(f"--frames-root {root} is not a directory")
        self.store = open_flow_store(root)
        self.expected = expected if expected is not None and expected.known else None

    def __call__(self, path: Path, video_id: str) -> FolderFlowStore:
        meta = self.store.meta(video_id) if self.store.exists(video_id) else None
        if meta is None:
            raise FileNotFoundError(f"no complete flow for {video_id} under {self.store.root}")
        if self.expected is not None:
            from inference.scoring import TVL1_ENGINES  # noqa: PLC0415 - Lightning

            want = self.expected
            differ = [f"{name} {got!r}, model {trained!r}" for name, got, trained in (
                ("bound", meta.bound, want.bound), ("step", meta.step, want.step),
                ("jpeg_quality", meta.jpeg_quality, want.jpeg_quality)) if got != trained]
            # Keys both record (tvl1_torch adds its device): a TV-L1 with fewer warps is other flow.
            differ += [f"params.{key} {meta.params[key]!r}, model {want.params[key]!r}"
                       for key in sorted(meta.params.keys() & want.params.keys()) if meta.params[key] != want.params[key]]
            # tvl1_torch is OpenCV's TV-L1 with the same parameters (inference.scoring.TVL1_ENGINES).
            if meta.algorithm not in (want.algorithm, TVL1_ENGINES.get(want.algorithm)):
                differ.insert(0, f"algorithm {meta.algorithm!r}, model {want.algorithm!r}")
            if differ:
                raise ValueError(f"--frames-root {self.store.root}: the flow of {video_id} is not the flow the model "
                                 f"was trained on ({'; '.join(differ)})")
        return self.store


def refuse_other_flow_stacks(recipe: Recipe) -> None:
    """ValueError (one line) when the model's flow stacks are not built as features build them
    (L consecutive forward fields, stacked as they are): bi-directional or trajectory stacks.

    Args:
        recipe: the model's recipe (its ``sampling`` block).
    """
    sampling = recipe.sampling
    if sampling.bidirectional_flow:
        raise ValueError("the model's flow stacks are bi-directional (sampling.bidirectional_flow: L/2 backward and "
                         "L/2 forward fields); features stack L forward fields, not what it was trained on")
    if sampling.stacking == "trajectory":
        raise ValueError("the model's flow stacks follow trajectories (sampling.stacking: trajectory); features "
                         "stack fields at fixed positions, not what it was trained on")


class FlowOnTheFly:
    """A video's flow computed in memory with ``config`` (the training flow's settings) by
    ``algorithms`` (default ``config.create_algorithms()``), one video at a time."""

    def __init__(self, config: ExtractionConfig, algorithms: list[FlowAlgorithm] | None = None):
        self.config = config
        self.algorithms = algorithms or config.create_algorithms()

    def __call__(self, path: Path, video_id: str) -> FolderFlowStore:
        store = MemoryFlowStore()  # a fresh one per video: the last video's JPEGs are let go
        store.extract(path, video_id, self.config, self.algorithms)
        return store


@dataclass(frozen=True)
class ExtractorSource:
    """What builds the extractor: plain values, so each worker process builds its own."""

    checkpoint: Path | None
    config: Path | None
    frames_root: Path | None
    streams: tuple[str, ...] | None
    settings: FeatureSettings
    device: str
    flow_engine: str | None = None

    def build(self) -> FeatureExtractor:
        from inference.load import NoClassNamesWarning, load_checkpoint, load_config  # noqa: PLC0415 - Lightning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoClassNamesWarning)  # features name no classes
            loaded = (load_config(self.config, self.checkpoint, self.device, classifier=False)
                      if self.config is not None else load_checkpoint(self.checkpoint, self.device))
        networks = {key: network for network, key in loaded.streams().values()}
        if self.streams is not None:
            missing = set(self.streams) - set(networks)
            if missing:
                raise ValueError(f"--streams {','.join(self.streams)}: the model reads {', '.join(sorted(networks))}")
            networks = {key: networks[key] for key in self.streams}
        recipe = loaded.recipe
        if "rgb" in networks and recipe.decoder == "rawframes":
            raise ValueError("the model's RGB was read from extracted JPEG frames (decoder: rawframes); features "
                             "decode the videos, which are not the frames it was trained on")
        flow_for = None
        if "flow" in networks:
            refuse_other_flow_stacks(recipe)
            flow_for = (ExtractedFlow(self.frames_root, recipe.flow) if self.frames_root
                        else self._flow_on_the_fly(loaded))
        return FeatureExtractor(networks, self.settings, recipe.augment, create_reader(recipe.decoder), flow_for,
                                self.device)

    def _flow_on_the_fly(self, loaded: Loaded) -> FlowOnTheFly:
        """``classify``'s flow: the recipe's settings, its engine choice (``inference.scoring``)."""
        from inference.scoring import VideoScorer  # noqa: PLC0415

        try:
            scorer = VideoScorer(loaded, self.device, engine=self.flow_engine)
        except ValueError as error:
            raise ValueError(f"{error}; or give --frames-root") from None
        return FlowOnTheFly(scorer.extraction, scorer.algorithms)

    def __call__(self) -> FeatureExtractor:
        return self.build()


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    """The ``features`` command's arguments."""
    p = argparse.ArgumentParser(prog="cli.py features", description=DESCRIPTION)
    p.add_argument("video_root", type=Path, metavar="VIDEO_ROOT")
    p.add_argument("out_root", type=Path, metavar="OUT")
    p.add_argument("--checkpoint", type=Path, help="a Lightning checkpoint of ours (with --config: its state dict)")
    p.add_argument("--config", type=Path, help="a config whose model is built with its networks' weights: "
                   "the I3D port's Kinetics files, or ImageNet weights inflated")
    p.add_argument("--streams", help="comma-separated streams to extract (rgb, flow); default every stream the "
                   "model reads")
    p.add_argument("--stack-size", type=_positive(int), metavar="FRAMES",
                   help="frames per snippet; default the largest number of frames a stream's network takes")
    p.add_argument("--step-size", type=_positive(int), metavar="FRAMES",
                   help="frames between snippet starts; default the stack size")
    p.add_argument("--fps", type=_positive(float), help="resample frames to this rate before stacking")
    p.add_argument("--crops", choices=sorted(CROPS), default="center",
                   help="center: T x D; ten (4 corners and the centre, each mirrored): T x 10 x D")
    p.add_argument("--concat", action="store_true", help="one T x (D_rgb + D_flow) array per video "
                   "(<id>_concat.npy, RGB first) instead of one per stream")
    p.add_argument("--frames-root", type=Path, help="read flow extracted there instead of computing it")
    p.add_argument("--flow-engine", help="the flow algorithm to run: default the checkpoint's (tvl1 runs as "
                   "tvl1_torch on CUDA, as in classify); only tvl1_torch may stand in for tvl1")
    p.add_argument("--batch-size", type=_positive(int), default=8,
                   help="views (snippets x crops) per forward")
    p.add_argument("--device", default=None, help="default cuda when available, else cpu")
    p.add_argument("--workers", type=_positive(int), default=1, help="worker processes (each with the network)")
    p.add_argument("--list", type=Path, dest="list_file", metavar="FILE",
                   help="video paths relative to VIDEO_ROOT, one per line (a failures file works)")
    p.add_argument("--shard", metavar="I/N", help="take every N-th video starting at I (0-based); default from "
                   "SLURM_ARRAY_TASK_ID/COUNT or torchrun's RANK/WORLD_SIZE, else 0/1")
    p.add_argument("--extensions", default=",".join(VIDEO_EXTENSIONS), help="video file extensions to look for")
    p.add_argument("--failures", type=Path, metavar="FILE",
                   help="where to list failed videos (default OUT/failures_shard<I>of<N>.txt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``features``; the exit status (module docstring)."""
    p = parser()
    args = p.parse_args(argv)
    if args.checkpoint is None and args.config is None:
        p.error("give --checkpoint CKPT or --config X.yaml")
    try:
        shard = parse_shard(args.shard) if args.shard else shard_from_env()
    except ValueError as error:
        p.error(f"--shard: {error}")
    if args.out_root.resolve().is_relative_to(args.video_root.resolve()):
        p.error("OUT must lie outside VIDEO_ROOT")
    # Loading a network (or computing its flow engine) takes a while: Ctrl-C there is one line too.
    return stoppable(lambda: _run(p, args, shard))


def _run(p: argparse.ArgumentParser, args: argparse.Namespace, shard: Shard) -> int:
    device = process_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    streams = tuple(s.strip() for s in args.streams.split(",") if s.strip()) if args.streams else None
    try:
        settings = FeatureSettings(stack=args.stack_size, step=args.step_size, fps=args.fps, crops=args.crops,
                                   concat=args.concat, batch=args.batch_size)
        source = ExtractorSource(args.checkpoint, args.config, args.frames_root, streams, settings, device,
                                 args.flow_engine)
        extractor = source.build()  # refused here, once, with one line: not once per video
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = extractor.settings
    what = (f"features ({', '.join(extractor.networks)}), stack {settings.stack}, step "
            f"{settings.step or settings.stack}, {settings.crops} crops" + (f", {settings.fps} fps" if settings.fps else ""))
    build = (lambda: extractor) if args.workers == 1 else source
    return run_command(p, args, shard, what,
                       lambda videos, failures: extract_features_many(args.video_root, videos, args.out_root, build,
                                                                      workers=args.workers, failures_file=failures,
                                                                      progress=not args.no_progress))
