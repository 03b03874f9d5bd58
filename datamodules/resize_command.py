"""``python -m datamodules resize VIDEO_ROOT OUT [--short-side 256] [--workers N] ...``.

Exit status as ``python -m flow extract``'s: 0 every video done or skipped, 1 some failed
(listed in the failures file), 2 bad arguments, 3 the run stopped (output unwritable, disk
full, workers crashing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from datamodules.resize import CODECS, ResizeConfig, default_codec, resize_many
from flow.sharding import parse_shard, shard_from_env
from flow.video_run import run_command
from flow.videos import VIDEO_EXTENSIONS

DESCRIPTION = """Re-encode every video under VIDEO_ROOT (or those in --list) into OUT/<video id>.mp4:
H.264 (or mpeg4), yuv420p, short side --short-side (flow extraction's rule), a keyframe
every --keyframe-interval frames, every frame at the source's frame rate, phone videos
upright. Finished videos are skipped, so a killed run is resumed by running the same
command again. The datamodules read OUT as a video root, with the dataset's own annotation
files (Class/v_X.avi is found as Class/v_X.mp4)."""


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected int, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def add_resize_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``resize`` subcommand's parser, added to ``commands``."""
    parser = commands.add_parser("resize", help="re-encode videos smaller, for faster decoding in training",
                                 description=DESCRIPTION)
    parser.add_argument("video_root", type=Path, metavar="VIDEO_ROOT")
    parser.add_argument("out_root", type=Path, metavar="OUT")
    parser.add_argument("--short-side", type=_at_least(0), default=256,
                        help="the shorter side in pixels (0 keeps the size); even for h264")
    parser.add_argument("--keyframe-interval", type=_at_least(1), default=16, metavar="FRAMES",
                        help="a keyframe every FRAMES frames: a clip starting anywhere decodes at most "
                        "FRAMES - 1 frames it does not use")
    parser.add_argument("--codec", choices=list(CODECS), default=None,
                        help="h264 (libx264; odd sides rounded up to even) or mpeg4 (exact sizes); "
                        "default h264 where PyAV has libx264, else mpeg4")
    parser.add_argument("--workers", type=_at_least(1), default=1,
                        help="worker processes; >1 also isolates decoder crashes")
    parser.add_argument("--threads", type=_at_least(0), default=0,
                        help="encoder threads per worker; 0 (default): the usable cores divided by the workers")
    parser.add_argument("--list", type=Path, dest="list_file", metavar="FILE",
                        help="video paths relative to VIDEO_ROOT, one per line (annotation files and a "
                        "failures file work: extra columns are ignored)")
    parser.add_argument("--shard", metavar="I/N",
                        help="take every N-th video starting at I (0-based); default from "
                        "SLURM_ARRAY_TASK_ID/COUNT or torchrun's RANK/WORLD_SIZE, else 0/1")
    parser.add_argument("--extensions", default=",".join(VIDEO_EXTENSIONS),
                        help="comma-separated video file extensions to look for")
    parser.add_argument("--failures", type=Path, metavar="FILE",
                        help="where to list failed videos (default OUT/failures_shard<I>of<N>.txt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_resize(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the parsed ``resize`` command; usage errors exit 2 through ``parser``."""
    try:
        shard = parse_shard(args.shard) if args.shard else shard_from_env()
        config = ResizeConfig(short_side=args.short_side, keyframe_interval=args.keyframe_interval,
                              codec=args.codec or default_codec(), threads=args.threads)
    except ValueError as error:
        parser.error(str(error))
    if args.out_root.resolve().is_relative_to(args.video_root.resolve()):
        parser.error("OUT must lie outside VIDEO_ROOT (a rerun would list the resized videos as sources)")
    return run_command(parser, args, shard, f"{config.codec} at short side {config.short_side}",
                       lambda videos, failures: resize_many(args.video_root, videos, args.out_root, config,
                                                            workers=args.workers, failures_file=failures,
                                                            progress=not args.no_progress))
