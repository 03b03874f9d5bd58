"""What pre-resizing videos (``python -m datamodules resize``) saves the training readers.

Input: ``--videos`` videos generated with FFmpeg at 640x480, 25 fps, ``--frames`` frames
each (a moving test pattern with temporal noise, so that the encoders spend bits as on camera
footage), in two source codecs: MPEG-4 part 2 in AVI (UCF-101's XVID) and H.264 in MP4 with
x264's default keyframe interval (250, as in most downloads). Each is resized to
``--short-side`` with each of the tool's codecs, and every version is read by the
datamodules' frame readers (``datamodules.decoding``: decord, torchcodec) as training reads
a 3D clip: ``--clip`` consecutive frames at a random start, the video opened anew each
time, the same starts for every version.

Per worker: this process with one thread, as a DataLoader worker. Each version is timed
in ``--rounds`` rounds of ``--seconds`` (versions alternating: the machine is shared) and
keeps its fastest round; ms per clip is CPU time of this process (all its threads: what a
worker with a core of its own pays), steadier than the wall clock on a busy machine.

Run:  python benchmarks/resize_speed.py              (a few minutes)
      python benchmarks/resize_speed.py --quick      (smoke run)
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import av
import torch
from table import Report, add_json_option, describe_machine, package_version, progress, ratio

from datamodules.decoding import create_reader
from datamodules.resize import CODECS, ResizeConfig, default_codec, resize_many
from flow.videos import list_videos

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
# name, file suffix, FFmpeg encoder arguments
SOURCES = (
    ("mpeg4 (xvid) avi", "avi", ["-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "4"]),
    ("h264 mp4", "mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
)
READERS = ("decord", "torchcodec")
COLUMNS = ["source", "version", "size", "MiB per video", "reader", "ms per clip", "speed-up vs original"]


def generate(path: Path, encoder: Sequence[str], frames: int, size: tuple[int, int], seed: int) -> None:
    source = f"testsrc2=size={size[0]}x{size[1]}:rate=25,noise=alls=12:allf=t+u:all_seed={seed}"
    command = [FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-frames:v", str(frames),
               *encoder, str(path)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)


def clip_ms(reader_name: str, paths: list[Path], clips: list[list[list[int]]], seconds: float) -> float:
    """CPU ms per clip over one round of at least ``seconds``, cycling through the videos."""
    reader = create_reader(reader_name)
    count, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        for path, starts in zip(paths, clips):
            for clip in starts:
                reader.read_frames(path, clip)
                count += 1
        if time.perf_counter() - wall0 >= seconds:
            return 1000 * (time.process_time() - cpu0) / count


def frame_size(path: Path) -> str:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return f"{stream.width}x{stream.height}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3, help="videos per source codec (default 3)")
    parser.add_argument("--frames", type=int, default=250, help="frames per video (default 250)")
    parser.add_argument("--clip", type=int, default=64, help="frames per clip (default 64)")
    parser.add_argument("--short-side", type=int, default=256, help="the resized short side (default 256)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per version and round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, versions alternating (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 small videos per codec, short rounds")
    add_json_option(parser)
    args = parser.parse_args(argv)
    args.size = (640, 480)
    if args.quick:
        args.videos, args.frames, args.clip, args.short_side, args.seconds, args.rounds = 2, 24, 8, 40, 0.05, 1
        args.size = (96, 64)
    if min(args.videos, args.frames, args.clip, args.rounds) < 1 or args.seconds <= 0 or args.clip > args.frames:
        parser.error("--videos, --frames, --clip, --rounds and --seconds must be positive, --clip <= --frames")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    codecs = [name for name in CODECS if name == default_codec() or name == "mpeg4"]
    machine = describe_machine(None, torchcodec=package_version("torchcodec"), decord=package_version("decord"),
                               av=av.__version__)
    report = Report("resize_speed", machine, args.json)
    picker = random.Random(0)
    starts = [[list(range(start, start + args.clip)) for start in
               (picker.randrange(args.frames - args.clip + 1) for _ in range(4))] for _ in range(args.videos)]
    with tempfile.TemporaryDirectory() as scratch:
        versions: dict[tuple[str, str], list[Path]] = {}
        resize_rates = []
        for label, suffix, encoder in SOURCES:
            root = Path(scratch) / suffix
            root.mkdir()
            progress(f"generating {args.videos} {label} videos")
            for k in range(args.videos):
                generate(root / f"v{k}.{suffix}", encoder, args.frames, args.size, seed=k)
            versions[label, "original"] = [root / name for name in list_videos(root)]
            for codec in codecs:
                progress(f"resizing {label} with {codec}")
                out = Path(scratch) / f"{suffix}_{codec}"
                summary = resize_many(root, list_videos(root), out, ResizeConfig(args.short_side, codec=codec),
                                      progress=False)
                if summary.failed:
                    raise SystemExit(f"resizing failed: {summary.failures[0]}")
                resize_rates.append((label, codec, summary.frames / summary.wall_seconds))
                versions[label, f"resized {codec}"] = [out / f"{path.stem}.mp4" for path in versions[label, "original"]]
        best: dict[tuple[str, str, str], float] = {}
        for round_ in range(args.rounds):
            for (label, version), paths in versions.items():
                for reader in READERS:
                    progress(f"round {round_ + 1}/{args.rounds}: {label}, {version}, {reader}")
                    ms = clip_ms(reader, paths, starts, args.seconds)
                    best[label, version, reader] = min(ms, best.get((label, version, reader), ms))
        table = report.table(f"{args.clip}-frame clips per worker, {args.size[0]}x{args.size[1]} sources "
                             f"resized to short side {args.short_side}", COLUMNS)
        for (label, version), paths in versions.items():
            mib = sum(path.stat().st_size for path in paths) / len(paths) / 2**20
            for reader in READERS:
                ms = best[label, version, reader]
                table.add(label, version, frame_size(paths[0]), mib, reader, ms,
                          ratio(best[label, "original", reader] / ms))
        for label, codec, rate in resize_rates:
            report.note(f"resizing {label} with {codec}: {rate:.0f} frames/s (1 worker, wall clock)")
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
