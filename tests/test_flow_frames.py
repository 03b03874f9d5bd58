import subprocess
from pathlib import Path

import av
import cv2
import decord
import numpy as np
import pytest
from test_flow_extract import stored_flow, write_moving_video

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
