"""Re-encoding videos smaller, so training decodes fewer pixels: one video, and a whole root.

``python -m datamodules resize VIDEO_ROOT OUT --short-side 256`` writes every video under
VIDEO_ROOT to ``OUT/<video id>.mp4`` (the same class folders and file stems, the video id
rule of ``flow.videos``): H.264 (libx264; mpeg4 where the PyAV build has no libx264),
yuv420p, a keyframe every ``keyframe_interval`` frames so that a clip read at a random
position decodes at most ``keyframe_interval - 1`` frames before its first one, and no B-frames (every
frame's decode and display order agree, which the frame-accurate readers rely on). The
frames are the source's, every one in order at the source's frame rate: the datamodules'
decoders count as many frames in the output as in the source. Audio is dropped.

Size. The short-side rule is flow extraction's (``flow.frames.resized_size``), so a video
resized at a short side and flow extracted at that short side agree wherever the rule
gives even sides (a 4:3 or 16:9 video at 240, 16:9 at 360). H.264 in yuv420p cannot
store an odd side (its chroma planes are half size, cropped in 2-pixel steps), so h264
rounds an odd side up by one (640x480 at 256: 342x256, where extracted flow is 341x256);
mpeg4 stores the exact size. The datamodules refuse RGB and flow of different sizes,
naming the video: extract flow from the resized root (same short side, or 0), or resize
with ``--codec mpeg4`` to match flow extracted from the originals.

Phone videos are written upright: the display rotation (``flow.orientation``) is applied
to the frames and the output carries none, so every decoder shows the same frames.

A video is written as ``<id>.mp4.tmp-<host>-<pid>``, its frame count checked, and renamed:
an output under its final name is complete, so a rerun skips it, and redoes every video a
killed run left unfinished (removing that run's temporary file). A lock per video
(``flow/ownership.py``) keeps a second run on the same root off a video being written.
Failures, the failure list and the exit status are flow extraction's; the run over many
videos is on ``flow.pool``'s processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from itertools import chain
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from datamodules.annotations.records import RESIZED_SUFFIX
from flow.av_compat import copy_colour_tags, display_matrix, frame_rate, open_input
from flow.extract import check_writable
from flow.ownership import temporary
from flow.frames import VideoError, resized_size
from flow.orientation import quarter_turns, upright_size
from flow.stages import usable_cores
from flow.summary import RunTotals
from flow.video_run import Job, Skipped, claimed, plan_jobs, pooled, run_jobs

__all__ = [
    "CODECS", "Codec", "ResizeConfig", "ResizeSummary", "ResizedVideo", "default_codec", "encoded_size",
    "resize_many", "resize_video", "tmp_path",
]  # fmt: skip

@dataclass(frozen=True)
class Codec:
    """An FFmpeg encoder and what it needs: ``even_size`` for encoders that cannot store odd sides."""

    encoder: str
    even_size: bool
    options: dict[str, str]


CODECS: dict[str, Codec] = {
    # crf 18: close to transparent on sources that are themselves compressed. The output is
    # read many times, written once: tune fastdecode (no CABAC, no deblocking filter) halved
    # the decoders' time per clip, and preset veryfast encoded 2.7x faster than fast, at about
    # the same size (640x480 -> 342x256, benchmarks/decode_speed.py's material). bf 0: no B-frames.
    "h264": Codec("libx264", even_size=True,
                  options={"crf": "18", "preset": "veryfast", "tune": "fastdecode", "bf": "0"}),
    # FFmpeg's -q:v 2, its best fixed quantiser but one.
    "mpeg4": Codec("mpeg4", even_size=False, options={"flags": "+qscale", "global_quality": str(2 * 118), "bf": "0"}),
}


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
        return False
    return True


def default_codec() -> str:
    """h264 where this PyAV build has libx264 (PyPI wheels do), else mpeg4."""
    return "h264" if _has_encoder(CODECS["h264"].encoder) else "mpeg4"


@dataclass(frozen=True)
class ResizeConfig:
    """How to re-encode: ``short_side`` 0 keeps the size; ``threads`` per worker, 0: the usable
    cores over the workers."""

    short_side: int = 256
    keyframe_interval: int = 16
    codec: str = field(default_factory=default_codec)
    threads: int = 0

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; known: {', '.join(CODECS)}")
        if not _has_encoder(CODECS[self.codec].encoder):
            raise ValueError(f"codec {self.codec}: this PyAV build has no {CODECS[self.codec].encoder} encoder")
        if self.short_side < 0:
            raise ValueError(f"short_side must be >= 0 (0 keeps the size), got {self.short_side}")
        if self.short_side % 2 and CODECS[self.codec].even_size:
            raise ValueError(f"short_side {self.short_side} is odd; codec {self.codec} stores even sides only")
        if self.keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {self.keyframe_interval}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: the usable cores over the workers), got {self.threads}")


def encoded_size(width: int, height: int, short_side: int, even: bool) -> tuple[int, int]:
    """The output size of an upright width x height video: ``resized_size``, with odd sides
    rounded up by one where ``even`` (the encoder stores even sides only)."""
    width, height = resized_size(width, height, short_side)
    return (width + width % 2, height + height % 2) if even else (width, height)


@dataclass(frozen=True)
class ResizedVideo:
    """One re-encoded video: its upright size before and after, frames, bytes, seconds."""

    source_size: tuple[int, int]
    size: tuple[int, int]
    num_frames: int
    bytes_written: int
    seconds: float


def _plane(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A plane's pixels as a (height, width) view, without its line padding."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def _upright_yuv420p(frame: av.VideoFrame, turns: int) -> av.VideoFrame:
    """A yuv420p frame turned ``turns`` quarter turns counter-clockwise (``flow.orientation``'s
    sense), plane by plane: no colour conversion, so nothing is rounded."""
    turned = av.VideoFrame(*upright_size(frame.width, frame.height, turns), "yuv420p")
    for source, target in zip(frame.planes, turned.planes):
        padded = np.zeros((target.height, target.line_size), np.uint8)
        padded[:, : target.width] = np.rot90(_plane(source), turns)
        target.update(padded)
    return turned


def _decoded(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    k = 0
    try:
        for k, frame in enumerate(container.decode(stream), start=1):
            yield frame
    except av.FFmpegError as error:
        raise VideoError(f"cannot decode frame {k + 1} ({error.strerror or error})") from None


def _encode(frames: Iterator[av.VideoFrame], target: Path, rate: Fraction, config: ResizeConfig,
            threads: int) -> tuple[tuple[int, int], tuple[int, int], int]:
    """Write ``frames`` into ``target`` (mp4); returns the upright source size, the output size
    and the frame count."""
    codec = CODECS[config.codec]
    first = next(frames, None)
    if first is None:
        raise VideoError("no frames")
    try:
        turns = quarter_turns(display_matrix(first))
    except ValueError as error:
        raise VideoError(str(error)) from None
    source_size = upright_size(first.width, first.height, turns)
    size = encoded_size(*source_size, config.short_side, codec.even_size)
    # swscale resizes the stored picture; the small result is then turned upright.
    stored_width, stored_height = upright_size(*size, turns)
    interpolation = "AREA" if size[0] < source_size[0] else "BILINEAR"
    reformatter = VideoReformatter()  # one swscale context for every frame of the video
    time_base = 1 / rate
    count = 0
    # The muxer's format is named: the temporary name's extension says nothing.
    with av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as output:
        stream = output.add_stream(codec.encoder, rate=rate, options=dict(codec.options))
        context = stream.codec_context
        context.width, context.height, context.pix_fmt = size[0], size[1], "yuv420p"
        context.time_base = time_base
        context.gop_size = config.keyframe_interval
        context.thread_count = threads
        for frame in chain([first], frames):
            picture = reformatter.reformat(frame, width=stored_width, height=stored_height, format="yuv420p",
                                           interpolation=interpolation)
            if count == 0:
                # swscale keeps the values' range and matrix (a full-range picture stays full
                # range): tagged as the source's, the output converts to the same RGB.
                copy_colour_tags(picture, context)
            if turns:
                picture = _upright_yuv420p(picture, turns)
            # Frames numbered 0, 1, 2, ... at the source's rate: every decoded frame is kept,
            # whatever the source's timestamps (repeated, missing, variable).
            picture.pts, picture.time_base = count, time_base
            output.mux(stream.encode(picture))
            count += 1
        output.mux(stream.encode(None))
    return source_size, size, count


def _counted_frames(path: Path) -> int:
    with open_input(str(path)) as container:
        return container.streams.video[0].frames


def tmp_path(target: Path) -> Path:
    """Where this process writes ``target`` before it is complete: ``<target>.tmp-<host>-<pid>``."""
    return temporary(target)


def resize_video(source: Path | str, target: Path | str, config: ResizeConfig, threads: int = 1) -> ResizedVideo:
    """Re-encode ``source`` into ``target`` (an .mp4; folders created), written as
    ``target.tmp`` and renamed once complete. ``threads``: the encoder's.

    Raises VideoError for a video that cannot be re-encoded (nothing is left behind).
    """
    started = time.perf_counter()
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise VideoError("no such file")
    if source.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        container = open_input(str(source))
    except av.FFmpegError as error:
        raise VideoError(f"cannot open as a video ({error.strerror or error})") from None
    partial_file = tmp_path(target)
    try:
        with container:
            # FFmpeg's choice of stream, as the decoders' (it passes over cover art).
            stream = container.streams.best("video")
            if stream is None:
                raise VideoError("no video stream")
            if stream.codec_context is None:
                raise VideoError("no decoder for its video codec")
            rate = frame_rate(stream)
            if rate is None:
                raise VideoError("unknown frame rate")
            stream.thread_count = 1  # the workers are the parallelism
            target.parent.mkdir(parents=True, exist_ok=True)
            source_size, size, count = _encode(_decoded(container, stream), partial_file, rate, config, threads)
        counted = _counted_frames(partial_file)
        if counted != count:
            raise VideoError(f"wrote {count} frames but the output holds {counted}")
        with open(partial_file, "rb+") as written:
            os.fsync(written.fileno())  # the name says "complete" only once the bytes are on disk
        os.replace(partial_file, target)
    except BaseException:
        partial_file.unlink(missing_ok=True)
        raise
    return ResizedVideo(source_size, size, count, target.stat().st_size, time.perf_counter() - started)


@dataclass
class ResizeSummary(RunTotals):
    """Totals of a resize run."""

    frames: int = 0

    def add(self, result: ResizedVideo) -> None:
        self.done += 1
        self.frames += result.num_frames
        self.bytes_written += result.bytes_written

    def details(self) -> list[str]:
        rate = self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0
        return [f"frames: {self.frames}, written: {self.bytes_written / 2**20:.1f} MiB",
                f"wall time: {self.wall_seconds:.1f} s, {rate:.1f} frames/s"]


class _Worker:
    """Re-encodes jobs; returns a ResizedVideo or a failure reason (FatalError for a full disk)."""

    def __init__(self, config: ResizeConfig, workers: int = 1):
        self.config = config
        self.threads = config.threads or max(1, usable_cores() // workers)

    def __call__(self, job: Job) -> ResizedVideo | Skipped | str:
        return claimed(job, lambda: resize_video(job.source, job.target, self.config, self.threads), job.target.parent)


def _outcomes(jobs: Sequence[Job], config: ResizeConfig, workers: int) -> Iterator[tuple[Job, ResizedVideo | str]]:
    if workers == 1:  # in this process: no pool to start
        worker = _Worker(config)
        yield from ((job, worker(job)) for job in jobs)
        return
    yield from pooled(jobs, partial(_Worker, config, workers), workers, "re-encoding")


def resize_many(
    video_root: Path | str,
    videos: Sequence[str],
    out_root: Path | str,
    config: ResizeConfig,
    workers: int = 1,
    failures_file: Path | str | None = None,
    progress: bool = True,
) -> ResizeSummary:
    """Re-encode ``videos`` (paths relative to ``video_root``) into ``out_root/<video id>.mp4``.

    Outputs that exist are skipped (they are complete: only a finished video gets its name),
    a killed run's videos redone (its temporary files removed); failures are
    collected (and written to ``failures_file``, one ``path<TAB>reason`` line each, as flow
    extraction writes them). Raises FatalError when the output cannot be written at all.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    started = time.perf_counter()
    out_root = Path(out_root)
    check_writable(out_root)
    summary = ResizeSummary(failures_file=Path(failures_file) if failures_file else None)

    jobs = plan_jobs(videos, video_root, out_root, lambda vid: vid + RESIZED_SUFFIX, lambda job: job.target.is_file(),
                     summary)
    run_jobs(jobs, _outcomes(jobs, config, workers), summary, "resize", started, progress)
    return summary
