"""How fast each decoder reads the clips a 3D network trains on, per DataLoader worker, from the
original videos and from their pre-resized copies (``python -m datamodules resize``).

Rows: the project's frame readers (``datamodules.decoding``: ``decord``, ``torchcodec`` and
``torchcodec_cuda``, i.e. torchcodec's NVDEC decoder with the frames brought back to the
host), the bare library call: PyAV (seek to the key frame before the clip, decode,
``to_ndarray("rgb24")``), and, on a GPU, torchcodec's CUDA decoder with the frames left on
the GPU. Without CUDA the GPU rows are printed with the reason they were skipped.

Input: videos generated with FFmpeg at ``--size`` (640x480), 25 fps, ``--frames`` frames
each (a moving test pattern with temporal noise, so that the encoders spend bits as on
camera footage), in two codecs: MPEG-4 part 2 in AVI (UCF-101's XVID) and H.264 in MP4 with
x264's default keyframe interval (250, as most downloads); each also resized to
``--short-side`` (256; 0: no resized copies) with each of the resize tool's codecs.
``--video FILE`` times a video of your own (and its resized copies) instead. Each read is
one 64-frame clip (``--clip``) of consecutive frames at a random start, the same starts for
every decoder, opening the video anew each time as the readers do.

"Per worker" is this process with one decoding thread, as in a DataLoader worker. The
decoders of one video alternate over ``--rounds`` rounds of ``--seconds`` each and each
keeps its fastest round (this machine is shared). Columns: frames/s per worker (CPU
decoders: per second of this process's CPU time; GPU rows: per wall-clock second),
wall-clock frames/s, CPU ms per clip, the ratio to the bare PyAV call, the ratio to the
same decoder on the original video, and the mean absolute difference in levels from the
CPU torchcodec reader's frames of the first clip (the decoders must agree).

Run:  python benchmarks/decode_speed.py                (about 5 minutes)
      python benchmarks/decode_speed.py --quick        (smoke run: small videos, short clips)
      python benchmarks/decode_speed.py --video my.mp4 --json decode.json
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from table import (
    Report,
    add_json_option,
    describe_machine,
    package_version,
    progress,
    ratio,
)

from datamodules.decoding import DecoderUnusable, create_reader
from datamodules.resize import ResizeConfig, default_codec, resize_many
from flow.av_compat import frames_per_second, open_input

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
# name, file suffix, FFmpeg encoder arguments
CODECS = (
    ("mpeg4 (xvid) avi", "avi", ["-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "4"]),
    ("h264 mp4", "mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
)
NO_CUDA = "skipped: no CUDA device (torch.cuda.is_available() is False)"
COLUMNS = ["video", "version", "size", "MiB", "decoder", "clip frames", "frames/s per worker", "wall-clock frames/s",
           "CPU ms/frame", "vs pyav", "vs original", "mean abs diff vs torchcodec", "note"]


def generate_video(path: Path, encoder_args: Sequence[str], frames: int, size: tuple[int, int] = (640, 480),
                   seed: int = 0) -> str | None:
    """A moving test pattern with temporal noise; None, or why it could not be written (a missing encoder)."""
    source = f"testsrc2=size={size[0]}x{size[1]}:rate=25,noise=alls=12:allf=t+u:all_seed={seed}"
    command = [FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-frames:v", str(frames),
               *encoder_args, str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"FFmpeg could not encode it: {result.stderr.strip().splitlines()[-1:] or result.returncode}"
    return None


def pyav_clip(path: Path, indices: Sequence[int]) -> np.ndarray:
    """Consecutive frames ``indices`` with PyAV, the bare way: seek to the key frame at or
    before the first, decode forward, keep the wanted ones."""
    wanted = set(indices)
    frames: dict[int, np.ndarray] = {}
    with open_input(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        fps, time_base = frames_per_second(stream), float(stream.time_base)
        start = int(indices[0] / fps / time_base) + (stream.start_time or 0)
        container.seek(start, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            index = round((frame.pts - (stream.start_time or 0)) * time_base * fps)
            if index in wanted:
                frames[index] = frame.to_ndarray(format="rgb24")
            if index >= indices[-1]:
                break
    return np.stack([frames[index] for index in indices])


@dataclass
class Decoder:
    name: str
    read: Callable[[Path, list[int]], object] | None  # None: skipped, ``note`` says why
    note: str = ""
    on_gpu: bool = False


def reader_decoder(label: str, setting: str) -> Decoder:
    if setting.endswith("cuda") and not torch.cuda.is_available():
        return Decoder(label, None, NO_CUDA)
    try:
        reader = create_reader(setting)
    except (ImportError, DecoderUnusable) as error:
        return Decoder(label, None, f"skipped: {error}")
    return Decoder(label, reader.read_frames, on_gpu=setting.endswith("cuda"))


def cuda_left_on_gpu() -> Decoder:
    """torchcodec's CUDA decoder, frames kept on the GPU (synchronised before the clock stops)."""
    label = "torchcodec cuda, frames stay on GPU"
    if not torch.cuda.is_available():
        return Decoder(label, None, NO_CUDA)
    from torchcodec.decoders import VideoDecoder

    def read(path: Path, indices: list[int]) -> torch.Tensor:
        frames = VideoDecoder(str(path), device="cuda", dimension_order="NHWC", seek_mode="exact")
        data = frames.get_frames_at(indices).data
        torch.cuda.synchronize()
        return data

    return Decoder(label, read, on_gpu=True)


def decoders() -> list[Decoder]:
    return [
        reader_decoder("decord", "decord"),
        reader_decoder("torchcodec", "torchcodec"),
        Decoder("pyav", pyav_clip),
        reader_decoder("torchcodec cuda (reader, frames to host)", "torchcodec_cuda"),
        cuda_left_on_gpu(),
    ]


def host_frames(frames: object) -> np.ndarray:
    return frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)


def time_round(decoder: Decoder, path: Path, clips: list[list[int]], seconds: float) -> tuple[float, float]:
    """(frames per wall second, CPU seconds per frame) over clips read for ``seconds`` or more."""
    frames, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    for clip in clips * 1000:
        decoder.read(path, clip)
        frames += len(clip)
        if time.perf_counter() - wall0 >= seconds:
            break
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return frames / wall, cpu / frames


def video_length(path: Path) -> int:
    return create_reader("torchcodec").num_frames(path)


def frame_size(path: Path) -> str:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return f"{stream.width}x{stream.height}"


def resized_versions(path: Path, short_side: int, folder: Path) -> list[tuple[str, Path]]:
    """``path`` resized by the resize tool with each of its codecs (the default and mpeg4), as (version, file)."""
    versions = []
    for codec in dict.fromkeys((default_codec(), "mpeg4")):
        progress(f"resizing {path.name} with {codec}")
        out = folder / f"{path.stem}_{codec}"
        summary = resize_many(path.parent, [path.name], out, ResizeConfig(short_side, codec=codec), progress=False)
        if summary.failed:
            raise SystemExit(f"resizing {path} failed: {summary.failures[0]}")
        versions.append((f"resized {codec}" + (" (default)" if codec == default_codec() else ""),
                         out / f"{path.stem}.mp4"))
    return versions


def measure_video(report_table, label: str, version: str, path: Path, args: argparse.Namespace,
                  originals: dict[tuple[str, str], float]) -> None:
    """One video's rows; ``originals`` holds each decoder's rate on the original video of ``label``
    (filled when ``version`` is "original") for the "vs original" column."""
    length = video_length(path)
    clip_length = min(args.clip, length)
    picker = random.Random(0)
    clips = [list(range(start, start + clip_length))
             for start in (picker.randrange(length - clip_length + 1) for _ in range(16))]
    runnable = [decoder for decoder in decoders() if decoder.read is not None]
    reference = host_frames(create_reader("torchcodec").read_frames(path, clips[0]))
    differences = {}
    for decoder in runnable:  # warm-up (CUDA context, NVDEC) and the agreement check
        progress(f"{label}, {version}: checking {decoder.name}")
        frames = host_frames(decoder.read(path, clips[0]))
        if frames.shape != reference.shape:
            raise SystemExit(f"{decoder.name} read {frames.shape} from {path}, torchcodec {reference.shape}")
        differences[decoder.name] = float(np.abs(frames.astype(np.int16) - reference).mean())
    best: dict[str, tuple[float, float, float]] = {}  # per worker, wall-clock frames/s, CPU s/frame
    for round_ in range(args.rounds):
        for decoder in runnable:
            progress(f"{label}, {version}: round {round_ + 1}/{args.rounds}, {decoder.name}")
            wall_rate, cpu = time_round(decoder, path, clips, args.seconds)
            rate = wall_rate if decoder.on_gpu else 1.0 / cpu
            if decoder.name not in best or rate > best[decoder.name][0]:
                best[decoder.name] = (rate, wall_rate, cpu)
    bare = best["pyav"][0]
    size, mib = frame_size(path), path.stat().st_size / 2**20
    for decoder in decoders():
        if decoder.read is None:
            report_table.add(label, version, size, mib, decoder.name, clip_length, None, None, None, None, None, None,
                             decoder.note)
            continue
        rate, wall_rate, cpu = best[decoder.name]
        if version == "original":
            originals[label, decoder.name] = rate
        original = originals.get((label, decoder.name))
        note = "per worker: wall clock (the GPU's work is not in CPU time)" if decoder.on_gpu else ""
        report_table.add(label, version, size, mib, decoder.name, clip_length, rate, wall_rate, 1000 * cpu,
                         ratio(rate / bare), ratio(rate / original) if original else None, differences[decoder.name],
                         note)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="time this video instead of generated ones")
    parser.add_argument("--frames", type=int, default=250, help="frames of each generated video (default 250)")
    parser.add_argument("--size", default="640x480", help="WxH of the generated videos (default 640x480)")
    parser.add_argument("--short-side", type=int, default=256,
                        help="the resized copies' short side, even (default 256; 0: no resized copies)")
    parser.add_argument("--clip", type=int, default=64, help="frames per clip (default 64)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per decoder and round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, decoders alternating (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small 40-frame videos, 16-frame clips")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.clip, args.seconds, args.rounds, args.size, args.short_side = 40, 16, 0.1, 1, "96x64", 40
    if args.video is not None and not args.video.is_file():
        parser.error(f"--video: no such file: {args.video}")
    if min(args.frames, args.clip, args.rounds) < 1 or args.seconds <= 0:
        parser.error("--frames, --clip, --rounds and --seconds must be positive")
    try:
        args.size = tuple(int(side) for side in args.size.split("x"))
        assert len(args.size) == 2 and min(args.size) > 0
    except (ValueError, AssertionError):
        parser.error(f"--size: expected WxH, e.g. 640x480, got {args.size}")
    if args.short_side < 0 or args.short_side % 2:
        parser.error("--short-side must be 0 or a positive even number (H.264 stores even sides)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    machine = describe_machine(device, torchcodec=package_version("torchcodec"), decord=package_version("decord"),
                               av=av.__version__)
    report = Report("decode_speed", machine, args.json)
    table = report.table(f"{args.clip}-frame clips per worker", COLUMNS)
    originals: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        if args.video is not None:
            videos = [(args.video.name, args.video, None)]
        else:
            videos = []
            for label, suffix, encoder in CODECS:
                path = Path(scratch) / suffix / f"pattern.{suffix}"  # one folder each: the resize tool's ids
                path.parent.mkdir()
                progress(f"generating {label}")
                videos.append((label, path, generate_video(path, encoder, args.frames, args.size)))
        for number, (label, path, missing) in enumerate(videos):
            if missing:
                table.add(label, "original", None, None, "all", args.clip, *[None] * 6, f"skipped: {missing}")
                continue
            versions = [("original", path)]
            if args.short_side:
                versions += resized_versions(path, args.short_side, Path(scratch) / f"resized{number}")
            for version, video in versions:
                measure_video(table, label, version, video, args, originals)
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
