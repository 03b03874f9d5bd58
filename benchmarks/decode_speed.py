"""How fast each decoder reads the clips a 3D network trains on, per DataLoader worker.

Rows: the project's frame readers (``datamodules.decoding``: ``torchcodec``, ``decord`` and
``torchcodec_cuda``, i.e. torchcodec's NVDEC decoder with the frames brought back to the
host, the reader's contract), PyAV's bare decoding (seek to the key frame before the clip,
decode, ``to_ndarray("rgb24")``), and, on a GPU, torchcodec's CUDA decoder with the frames
left on the GPU (the bare call: what a loader that finishes samples on the device would
pay). Without CUDA the GPU rows are printed with the reason they were skipped.

Input: videos generated with FFmpeg at 320x240 (UCF-101's size), 25 fps, ``--frames``
frames each, in two codecs: MPEG-4 part 2 in AVI (UCF-101's XVID) and H.264 in MP4
(Kinetics' and most downloads'); ``--video FILE`` times a video of your own instead. Each
read is one 64-frame clip (``--clip``) of consecutive frames at a random start, the same
starts for every decoder, opening the video anew each time as the readers do.

"Per worker" is this process with one decoding thread (torch, torchcodec, decord, PyAV),
as in a DataLoader worker. The decoders of one video alternate over ``--rounds`` rounds of
``--seconds`` each and each keeps its fastest round (this machine is shared). Columns:
frames/s per worker: for the CPU decoders frames per second of this process's CPU time (all
its threads: what a worker with a core of its own delivers, steadier than the wall clock on
a shared machine), for the GPU rows frames per wall-clock second (the GPU's work is not in
the CPU time); wall-clock frames/s; the CPU time per frame (on CUDA, what decoding still
costs the worker's core); the ratio of frames/s per worker to decord's; and the mean
absolute difference in levels from the CPU torchcodec reader's frames of the first clip
(the decoders must agree, not only be fast).

Run:  python benchmarks/decode_speed.py                (a few minutes)
      python benchmarks/decode_speed.py --quick        (smoke run: short video and clips)
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
from flow.av_compat import frames_per_second, open_input

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
SIZE = (320, 240)
# name, file suffix, FFmpeg encoder arguments
CODECS = (
    ("mpeg4 (xvid) avi", "avi", ["-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "4"]),
    ("h264 mp4", "mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "50"]),
)
NO_CUDA = "skipped: no CUDA device (torch.cuda.is_available() is False)"
COLUMNS = ["video", "decoder", "clip frames", "frames/s per worker", "wall-clock frames/s", "CPU ms/frame",
           "vs decord", "mean abs diff vs torchcodec", "note"]


def generate_video(path: Path, encoder_args: Sequence[str], frames: int) -> str | None:
    """A moving test pattern at 320x240; None, or why it could not be written (a missing encoder)."""
    command = [FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i",
               f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate=25", "-frames:v", str(frames), *encoder_args, str(path)]
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


def measure_video(report_table, label: str, path: Path, args: argparse.Namespace) -> None:
    length = video_length(path)
    clip_length = min(args.clip, length)
    picker = random.Random(0)
    clips = [list(range(start, start + clip_length))
             for start in (picker.randrange(length - clip_length + 1) for _ in range(16))]
    runnable = [decoder for decoder in decoders() if decoder.read is not None]
    reference = host_frames(create_reader("torchcodec").read_frames(path, clips[0]))
    differences = {}
    for decoder in runnable:  # warm-up (CUDA context, NVDEC) and the agreement check
        progress(f"{label}: checking {decoder.name}")
        frames = host_frames(decoder.read(path, clips[0]))
        if frames.shape != reference.shape:
            raise SystemExit(f"{decoder.name} read {frames.shape} from {path}, torchcodec {reference.shape}")
        differences[decoder.name] = float(np.abs(frames.astype(np.int16) - reference).mean())
    best: dict[str, tuple[float, float, float]] = {}  # per worker, wall-clock frames/s, CPU s/frame
    for round_ in range(args.rounds):
        for decoder in runnable:
            progress(f"{label}: round {round_ + 1}/{args.rounds}, {decoder.name}")
            wall_rate, cpu = time_round(decoder, path, clips, args.seconds)
            rate = wall_rate if decoder.on_gpu else 1.0 / cpu
            if decoder.name not in best or rate > best[decoder.name][0]:
                best[decoder.name] = (rate, wall_rate, cpu)
    baseline = best.get("decord", (None,))[0]
    for decoder in decoders():
        if decoder.read is None:
            report_table.add(label, decoder.name, clip_length, None, None, None, None, None, decoder.note)
            continue
        rate, wall_rate, cpu = best[decoder.name]
        note = "per worker: wall clock (the GPU's work is not in CPU time)" if decoder.on_gpu else ""
        report_table.add(label, decoder.name, clip_length, rate, wall_rate, 1000 * cpu,
                         ratio(rate / baseline) if baseline else None, differences[decoder.name], note)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="time this video instead of generated ones")
    parser.add_argument("--frames", type=int, default=250, help="frames of each generated video (default 250)")
    parser.add_argument("--clip", type=int, default=64, help="frames per clip (default 64)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per decoder and round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, decoders alternating (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 40-frame videos, 16-frame clips, short rounds")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.clip, args.seconds, args.rounds = 40, 16, 0.1, 1
    if args.video is not None and not args.video.is_file():
        parser.error(f"--video: no such file: {args.video}")
    if min(args.frames, args.clip, args.rounds) < 1 or args.seconds <= 0:
        parser.error("--frames, --clip, --rounds and --seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    machine = describe_machine(device, torchcodec=package_version("torchcodec"), decord=package_version("decord"),
                               av=av.__version__)
    report = Report("decode_speed", machine, args.json)
    table = report.table(f"{args.clip}-frame clips per worker", COLUMNS)
    with tempfile.TemporaryDirectory() as scratch:
        if args.video is not None:
            videos = [(args.video.name, args.video, None)]
        else:
            videos = []
            for label, suffix, encoder in CODECS:
                path = Path(scratch) / f"pattern.{suffix}"
                progress(f"generating {label}")
                videos.append((label, path, generate_video(path, encoder, args.frames)))
        for label, path, missing in videos:
            if missing:
                table.add(label, "all", args.clip, None, None, None, None, None, f"skipped: {missing}")
                continue
            measure_video(table, label, path, args)
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
