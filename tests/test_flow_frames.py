import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import decord
import numpy as np
import pytest
from test_flow_extract import stored_flow, write_moving_video

from flow.av_compat import pyav_major
from flow.extract import ExtractionConfig, extract_video, open_video
from flow.frames import DECODERS, VideoError
from flow.meta import read_meta


def decord_rgb(video: Path, indices: list[int]) -> np.ndarray:
    return decord.VideoReader(str(video)).get_batch(indices).asnumpy()


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("step", [1, 3])
def test_frames_are_the_sampled_frames_in_order(tmp_path, decoder, step):
    # Longer than one decord batch, so batch boundaries are crossed.
    video = write_moving_video(tmp_path / "v.mp4", frames=21)
    config = ExtractionConfig(short_side=0, step=step, decoder=decoder)
    frames = list(open_video(video, config, gray=True, rgb=True))
    expected = decord_rgb(video, list(range(0, 21, step)))
    rgb, gray = np.stack([f.rgb for f in frames]), np.stack([f.gray for f in frames])
    assert rgb.shape == expected.shape and gray.shape == expected.shape[:3]
    expected_gray = np.stack([cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in expected])
    if decoder == "decord":
        assert np.array_equal(rgb, expected) and np.array_equal(gray, expected_gray)
    else:
        # The same pictures through another YUV->RGB conversion; gray is the luma plane.
        assert np.abs(rgb.astype(int) - expected).mean() < 2
        assert np.abs(gray.astype(int) - expected_gray).mean() < 2
    # Frame k is frame k, not a neighbour: the content moves 2 px per frame.
    assert all(np.abs(gray[k].astype(int) - expected_gray[k]).mean() < 2 for k in range(len(gray)))


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_gray_frames_do_not_depend_on_rgb_being_asked_for(tmp_path, decoder):
    video = write_moving_video(tmp_path / "v.avi", frames=5)
    config = ExtractionConfig(short_side=32, decoder=decoder)
    alone = [f.gray for f in open_video(video, config, gray=True, rgb=False)]
    both = list(open_video(video, config, gray=True, rgb=True))
    assert all(np.array_equal(a, b.gray) for a, b in zip(alone, both, strict=True))
    assert both[0].rgb.shape == (32, 43, 3) and both[0].gray.shape == (32, 43)
    assert all(f.rgb is None for f in open_video(video, config, gray=True, rgb=False))


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_size_and_fps_are_known_when_opened(tmp_path, decoder):
    video = write_moving_video(tmp_path / "v.avi", size=(96, 64))
    frames = open_video(video, ExtractionConfig(short_side=32, decoder=decoder))
    assert frames.source_size == (96, 64) and frames.size == (48, 32)
    assert frames.fps == pytest.approx(25)


def test_both_decoders_give_the_same_flow(tmp_path):
    video = write_moving_video(tmp_path / "v.avi", frames=10, size=(96, 64))
    for decoder in DECODERS:
        extract_video(video, tmp_path / decoder / "v", ExtractionConfig(algorithm="dis", short_side=0, decoder=decoder))
        assert read_meta(tmp_path / decoder / "v").decoder == decoder
    pyav, decord_ = stored_flow(tmp_path / "pyav" / "v"), stored_flow(tmp_path / "decord" / "v")
    assert pyav[:, 0].mean() == pytest.approx(2, abs=0.3)
    assert np.abs(pyav - decord_).mean() < 0.05


def test_a_file_without_a_video_stream_is_a_clear_error(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream"):
        open_video(path, ExtractionConfig())


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_garbage_is_a_video_error_naming_the_reason(tmp_path, decoder):
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(VideoError, match="cannot open as a video"):
        list(open_video(path, ExtractionConfig(decoder=decoder)))


def test_an_unknown_decoder_is_named():
    with pytest.raises(ValueError, match="unknown decoder 'ffmpeg'.*decord, pyav"):
        ExtractionConfig(decoder="ffmpeg")


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_cover_art_is_not_taken_for_the_video(tmp_path, decoder):
    main = write_moving_video(tmp_path / "main.mp4", frames=8, size=(96, 64))
    cover = tmp_path / "cover.png"
    cv2.imwrite(str(cover), np.full((16, 16, 3), 128, np.uint8))
    with_cover = tmp_path / "with_cover.mp4"
    command = ["ffmpeg", "-v", "error", "-i", str(cover), "-i", str(main), "-map", "0", "-map", "1",
               "-c", "copy", "-disposition:v:0", "attached_pic", str(with_cover)]  # fmt: skip
    subprocess.run(command, check=True)
    assert len(av.open(str(with_cover)).streams.video) == 2
    frames = open_video(with_cover, ExtractionConfig(short_side=0, decoder=decoder))
    assert frames.source_size == (96, 64)
    assert sum(1 for _ in frames) == 8


def remux(source: Path, target: Path, *options: bytes) -> Path:
    """``source`` stream-copied into ``target`` with extra ffmpeg output options (bytes: any encoding)."""
    command = [b"ffmpeg", b"-v", b"error", b"-i", bytes(source), b"-c", b"copy", *options, bytes(target)]
    subprocess.run(command, check=True)
    return target


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_metadata_not_in_utf8_is_no_reason_to_fail(tmp_path, decoder):
    video = write_moving_video(tmp_path / "v.mp4", frames=6)
    latin1 = remux(video, tmp_path / "latin1.avi", b"-metadata", b"title=caf\xe9")
    result = extract_video(latin1, tmp_path / "out", ExtractionConfig(algorithm="dis", short_side=32, decoder=decoder))
    assert result.pairs == 5


def open_files() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_an_unknown_codec_is_a_video_error_and_closes_the_file(tmp_path, decoder):
    video = write_moving_video(tmp_path / "v.mp4", frames=6)
    data = remux(video, tmp_path / "v.mkv").read_bytes()
    assert b"V_MPEG4/ISO/ASP" in data
    unknown = tmp_path / "unknown_codec.mkv"
    unknown.write_bytes(data.replace(b"V_MPEG4/ISO/ASP", b"V_MPEG4/ISO/XYZ"))
    before = open_files()
    for _ in range(3):
        with pytest.raises(VideoError, match="no decoder|cannot open"):
            open_video(unknown, ExtractionConfig(decoder=decoder))
    assert open_files() == before


class Rational19:
    """PyAV 19's AVRational as far as callers see it: never None, falsy when unset (0/1)."""

    def __init__(self, value: Fraction | None):
        self.value = Fraction(value or 0)

    def __bool__(self) -> bool:
        return self.value != 0

    def __float__(self) -> float:
        return float(self.value)


RATIONALS = ("time_base", "average_rate", "base_rate", "guessed_rate", "framerate", "rate",
             "sample_aspect_ratio", "display_aspect_ratio")  # fmt: skip


class Proxy:
    """Passes everything on to the PyAV object it wraps, except what PyAV 19 changed."""

    def __init__(self, real):
        object.__setattr__(self, "_real", real)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __setattr__(self, name, value):
        setattr(self._real, name, value)


class Stream19(Proxy):
    def __getattr__(self, name):
        if name == "average_rate":
            return Rational19(None)  # unset: the reader must fall back to guessed_rate
        value = getattr(self._real, name)
        return Rational19(value) if name in RATIONALS else value


class Streams19(Proxy):
    def best(self, kind):
        stream = self._real.best(kind)
        return None if stream is None else Stream19(stream)


class Container19(Proxy):
    @property
    def streams(self):
        return Streams19(self._real.streams)

    def decode(self, *streams):
        return self._real.decode(*(getattr(stream, "_real", stream) for stream in streams))


@pytest.fixture
def pyav_19(monkeypatch):
    """``av.open`` as PyAV 19 has it (CI's Python 3.11 cannot install 19): no metadata_encoding,
    metadata_errors or stream_options; metadata always UTF-8 with surrogateescape; rational
    attributes never None."""
    real_open = av.open
    # 19's metadata decoding, from the PyAV installed (which is 19 itself on Python >= 3.12).
    decoding = {} if pyav_major() >= 19 else {"metadata_errors": "surrogateescape"}

    def open19(file, mode=None, format=None, options=None, container_options=None, buffer_size=32768,
               timeout=None, io_open=None, hwaccel=None):
        return Container19(real_open(file, mode, format=format, options=options, container_options=container_options,
                                     buffer_size=buffer_size, timeout=timeout, **decoding))

    monkeypatch.setattr(av, "open", open19)
    monkeypatch.setattr(av, "__version__", "19.0.2")


def test_pyav_19_extracts_videos_with_any_metadata(tmp_path, pyav_19):
    video = write_moving_video(tmp_path / "v.mp4", frames=6)
    latin1 = remux(video, tmp_path / "latin1.avi", b"-metadata", b"title=caf\xe9")
    frames = open_video(latin1, ExtractionConfig(short_side=0))
    assert frames.fps == pytest.approx(25) and frames.source_size == (64, 48)
    result = extract_video(latin1, tmp_path / "out", ExtractionConfig(algorithm="dis", short_side=32))
    assert result.pairs == 5
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoError, match="cannot open as a video"):
        open_video(garbage, ExtractionConfig())


def test_decord_frames_that_are_not_rgb_are_refused(tmp_path):
    # decord 0.6 hands out 4 "channels" (padded rows) for frames 48 px wide.
    video = write_moving_video(tmp_path / "narrow.mp4", frames=4, size=(48, 64))
    with pytest.raises(VideoError, match=r"decord returned a frame of shape \(64, 48, 4\), not RGB"):
        open_video(video, ExtractionConfig(short_side=0, decoder="decord"))
    assert sum(1 for _ in open_video(video, ExtractionConfig(short_side=0))) == 4
