"""python -m datamodules resize: every frame kept, in order, at the source's rate; the short-side
rule; phone videos upright; failures listed; resumable; the datamodules read the output."""

import errno
import os
import socket
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from test_rotation import probed_rotation, red_corner, rotated_copy, write_marked_video

import datamodules.resize
from datamodules import generate
from datamodules.__main__ import main
from datamodules.annotations import UCF101
from datamodules.decoding import create_reader
from datamodules.resize import ResizeConfig, encoded_size, resize_many, resize_video
from flow.av_compat import frame_rate
from flow.ownership import Writer, lock_path, temporary
from flow.extract import ExtractionConfig, extract_many
from flow.frames import resized_size
from flow.videos import list_videos
from tests.conftest import video_datamodule

WIDTH, HEIGHT, FRAMES = 64, 48, 20
RATE = "30000/1001"
READERS = ["decord", "torchcodec"]



def settings(root: Path, **overrides) -> dict:
    """Small data settings for ``video_datamodule``: 32 px crops of L=4 stacks, 2 test positions."""
    return {"num_fields": 4, "crop_size": 32, "short_side": None, "test_positions": 2, "batch_size": 3,
            "num_workers": 0, "pin_memory": False, "cache_dir": str(root / "cache"), **overrides}

def distinct_frames(count: int = FRAMES) -> np.ndarray:
    """(count, HEIGHT, WIDTH, 3) RGB frames that differ from each other: a bright square
    stepping right, and a level that rises frame by frame."""
    frames = np.zeros((count, HEIGHT, WIDTH, 3), np.uint8)
    for k in range(count):
        frames[k] = (40 + 8 * k, 60, 200 - 6 * k)
        x = 3 * k % (WIDTH - 12)
        frames[k, 18:30, x : x + 12] = 255
    return frames


def ffmpeg_video(path: Path, frames: np.ndarray, rate: str = RATE) -> Path:
    """``frames`` (RGB) encoded by FFmpeg's command line (mpeg4, nearly lossless)."""
    height, width = frames.shape[1:3]
    command = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-r", rate, "-i", "-", "-c:v", "mpeg4", "-q:v", "1", "-pix_fmt", "yuv420p", str(path)]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(command, input=frames.tobytes(), check=True, capture_output=True)
    return path


def config(**overrides) -> ResizeConfig:
    return ResizeConfig(**{"short_side": 32, "keyframe_interval": 4, **overrides})


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return ffmpeg_video(tmp_path_factory.mktemp("source") / "clip.avi", distinct_frames())


@pytest.fixture(scope="module")
def resized(source, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("resized") / "clip.mp4"
    resize_video(source, target, config())
    return target


@pytest.mark.parametrize("reader", READERS)
def test_the_datamodules_decoders_count_the_sources_frames(source, resized, reader):
    decoder = create_reader(reader)
    assert decoder.num_frames(resized) == decoder.num_frames(source) == FRAMES


def test_h264_yuv420p_at_the_sources_rate_with_keyframes_every_interval(resized):
    with av.open(str(resized)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (stream.width, stream.height) == (44, 32)  # 64x48 at 32 is 43x32; H.264 stores even sides
        assert str(stream.average_rate) == RATE
        keyframes = [k for k, packet in enumerate(p for p in container.demux(stream) if p.size) if packet.is_keyframe]
    assert keyframes[0] == 0 and max(np.diff([*keyframes, FRAMES])) <= 4


def test_frames_are_the_sources_in_order_when_read_at_random(source, resized):
    original = create_reader("decord").read_frames(source, range(FRAMES))
    wanted = [13, 2, 19, 7, 8]
    frames = create_reader("torchcodec").read_frames(resized, wanted)
    assert frames.shape == (5, 32, 44, 3)
    small = np.stack([_area_resized(frame, (44, 32)) for frame in original]).astype(int)
    for k, frame in zip(wanted, frames):
        differences = np.abs(small - frame.astype(int)).mean(axis=(1, 2, 3))
        assert differences.argmin() == k and differences[k] < 4, (k, differences.round(1))


def _area_resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class Rate:
    """A rational as PyAV 19 gives it (numerator, denominator; falsy when unset: 0/1)."""

    def __init__(self, numerator: int, denominator: int = 1):
        self.numerator, self.denominator = numerator, denominator

    def __bool__(self) -> bool:
        return self.numerator != 0


@pytest.mark.parametrize("unset", [None, Rate(0)], ids=["pyav<=18", "pyav19"])
def test_the_frame_rate_is_exact_and_falls_back_to_the_guess(unset):
    stream = SimpleNamespace(average_rate=unset, guessed_rate=Rate(30000, 1001))
    assert frame_rate(stream) == Fraction(30000, 1001)
    assert frame_rate(SimpleNamespace(average_rate=Fraction(25), guessed_rate=unset)) == 25
    assert frame_rate(SimpleNamespace(average_rate=unset, guessed_rate=unset)) is None


def test_the_size_is_flow_extractions_short_side_rule_made_even_for_h264():
    assert encoded_size(640, 480, 256, even=False) == resized_size(640, 480, 256) == (341, 256)
    assert encoded_size(640, 480, 256, even=True) == (342, 256)
    assert encoded_size(1920, 1080, 256, even=True) == (456, 256)
    assert encoded_size(320, 240, 240, even=True) == (320, 240)
    assert encoded_size(63, 47, 0, even=True) == (64, 48)


def test_mpeg4_keeps_the_exact_size_of_extracted_flow(source, tmp_path):
    result = resize_video(source, tmp_path / "clip.mp4", config(codec="mpeg4"))
    assert result.size == resized_size(WIDTH, HEIGHT, 32) == (43, 32)
    assert create_reader("decord").read_frames(tmp_path / "clip.mp4", [0, 19]).shape == (2, 32, 43, 3)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_phone_video_is_written_upright_without_a_rotation(tmp_path, degrees):
    phone = rotated_copy(write_marked_video(tmp_path / "stored.mp4"), tmp_path / "phone.mp4", degrees)
    shown = create_reader("torchcodec").read_frames(phone, [0])[0]  # upright, as a player shows it
    # Not 32: decord 0.6 mis-decodes 48-px-wide videos (flow.frames.DecordFrames).
    result = resize_video(phone, tmp_path / "resized.mp4", config(codec="h264", short_side=40))
    assert probed_rotation(tmp_path / "resized.mp4") == 0
    for reader in READERS:
        frame = create_reader(reader).read_frames(tmp_path / "resized.mp4", [0])[0]
        assert frame.shape[:2] == ((60, 40) if degrees % 180 else (40, 60))
        assert red_corner(frame) == red_corner(shown)
    assert result.size == (frame.shape[1], frame.shape[0])


@pytest.mark.parametrize("reader", READERS)
def test_a_full_range_bt709_video_keeps_its_colours(tmp_path, reader):
    # Untagged, the output's full-range BT.709 values read as limited-range BT.601: 6.8 levels off.
    source = tmp_path / "camera.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25,format=yuvj420p",
                    "-frames:v", "5", "-c:v", "mpeg4", "-q:v", "1", "-colorspace", "bt709", "-color_primaries", "bt709",
                    "-color_trc", "bt709", str(source)], check=True, capture_output=True)  # fmt: skip
    resize_video(source, tmp_path / "resized.mp4", config(short_side=0))
    decoder = create_reader(reader)
    original, resized = (decoder.read_frames(path, range(5)).astype(int) for path in (source, tmp_path / "resized.mp4"))
    assert np.abs(resized - original).mean() < 2


def test_odd_short_side_is_refused_for_h264_and_taken_by_mpeg4(tmp_path):
    with pytest.raises(ValueError, match="short_side 33 is odd; codec h264"):
        config(short_side=33, codec="h264")
    assert config(short_side=33, codec="mpeg4").short_side == 33
    with pytest.raises(SystemExit) as stopped:
        main(["resize", str(tmp_path), str(tmp_path / "../out"), "--short-side", "255", "--codec", "h264"])
    assert stopped.value.code == 2


def test_an_output_inside_the_video_root_is_refused(tmp_path):
    with pytest.raises(SystemExit) as stopped:
        main(["resize", str(tmp_path), str(tmp_path / "small")])
    assert stopped.value.code == 2


@pytest.fixture
def video_root(tmp_path) -> Path:
    """Class folders holding two good videos, a corrupt one, an empty one and a text file."""
    root = tmp_path / "videos"
    frames = distinct_frames()
    ffmpeg_video(root / "Jump" / "v_Jump_g01_c01.avi", frames)
    ffmpeg_video(root / "Run" / "v_Run_g01_c01.mp4", frames[:12], rate="25")
    (root / "Run" / "v_Run_g02_c01.avi").write_bytes(os.urandom(4096))
    (root / "Run" / "v_Run_g03_c01.avi").touch()
    (root / "notes.txt").write_text("not a video")
    return root


def test_bad_videos_are_listed_the_others_resized_and_the_exit_status_is_1(video_root, tmp_path):
    out = tmp_path / "small"
    assert main(["resize", str(video_root), str(out), "--short-side", "32", "--no-progress"]) == 1
    assert sorted(list_videos(out)) == ["Jump/v_Jump_g01_c01.mp4", "Run/v_Run_g01_c01.mp4"]
    failures = dict(line.split("\t") for line in (out / "failures_shard0of1.txt").read_text().splitlines())
    assert failures == {"Run/v_Run_g02_c01.avi": "cannot open as a video (Invalid data found when processing input)",
                        "Run/v_Run_g03_c01.avi": "empty file (0 bytes)"}
    assert not list(out.rglob("*.tmp"))
    assert create_reader("decord").num_frames(out / "Run" / "v_Run_g01_c01.mp4") == 12


def test_a_rerun_skips_finished_videos_and_redoes_half_written_ones(video_root, tmp_path):
    out = tmp_path / "small"
    videos = ["Jump/v_Jump_g01_c01.avi", "Run/v_Run_g01_c01.mp4"]
    assert resize_many(video_root, videos, out, config(), progress=False).done == 2
    finished = out / "Jump" / "v_Jump_g01_c01.mp4"
    before = finished.stat().st_mtime_ns
    killed = out / "Run" / "v_Run_g01_c01.mp4"
    killed.unlink()
    # What a killed run leaves: its lock and its temporary file, under a pid now dead.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    writer = Writer(socket.gethostname(), int(dead.stdout), 0)
    temporary(killed, writer.tag()).write_bytes(b"half a video")
    lock_path(killed).write_text(writer.text())
    summary = resize_many(video_root, videos, out, config(), progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (1, 1, 0)
    assert finished.stat().st_mtime_ns == before
    assert not temporary(killed, writer.tag()).exists() and not lock_path(killed).exists()
    assert create_reader("decord").num_frames(killed) == 12
    assert sorted(path.name for path in killed.parent.iterdir()) == [killed.name]


def test_worker_processes_resize_and_report_like_one(video_root, tmp_path):
    summary = resize_many(video_root, list_videos(video_root), tmp_path / "small", config(), workers=2,
                          failures_file=tmp_path / "failures.txt", progress=False)
    assert (summary.done, summary.failed, summary.frames) == (2, 2, FRAMES + 12)
    assert len((tmp_path / "failures.txt").read_text().splitlines()) == 2


def test_a_full_disk_stops_the_run_with_exit_status_3(video_root, tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "small"))

    monkeypatch.setattr(datamodules.resize, "_encode", full_disk)
    assert main(["resize", str(video_root), str(tmp_path / "small"), "--no-progress"]) == 3
    assert not list((tmp_path / "small").rglob("*.mp4*"))


def test_a_failed_video_leaves_nothing_behind(tmp_path):
    broken = tmp_path / "broken.avi"
    broken.write_bytes(os.urandom(2048))
    with pytest.raises(Exception, match="cannot open as a video"):
        resize_video(broken, tmp_path / "out" / "broken.mp4", config())
    assert not list(tmp_path.rglob("*.mp4*"))


def test_the_datamodule_reads_a_resized_root_with_the_datasets_annotations(tmp_path):
    data = generate(tmp_path / "data", "ucf101", num_classes=2, videos_per_class=3, num_frames=12, size=(64, 48))
    out = tmp_path / "resized"
    assert main(["resize", str(data.video_root), str(out), "--short-side", "32", "--no-progress"]) == 0
    assert all(not (out / path.relative_to(data.video_root)).exists() for path in data.videos)  # .avi listed, .mp4 written
    datamodule = video_datamodule(UCF101(str(data.annotation_dir)), "rgb", video_root=str(out),
                                  **settings(tmp_path, num_fields=1))
    datamodule.setup("fit")
    index = datamodule.datasets["train"].index
    assert len(index) == 4 and all(path.endswith(".mp4") for path in index.paths)
    assert list(index.num_frames) == [12] * len(index)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["rgb"].shape[0] == 3 and batch["rgb"].shape[-2:] == (32, 32)


def test_two_streams_read_mpeg4_resized_videos_beside_flow_extracted_from_the_originals(tmp_path):
    # Flow at short side 32 of 64x48 videos is 43x32: mpeg4 stores that size, H.264 could not (44x32).
    data = generate(tmp_path / "data", "ucf101", num_classes=2, videos_per_class=3, num_frames=12, size=(64, 48))
    videos = list_videos(data.video_root)
    assert extract_many(data.video_root, videos, tmp_path / "flow", ExtractionConfig(algorithm="dis", short_side=32),
                        progress=False).failed == 0
    assert resize_many(data.video_root, videos, tmp_path / "resized", config(codec="mpeg4"), progress=False).done == 6
    datamodule = video_datamodule(UCF101(str(data.annotation_dir)), "two_stream", video_root=str(tmp_path / "resized"),
                                  frames_root=str(tmp_path / "flow"), **settings(tmp_path))
    datamodule.setup("validate")
    dataset = datamodule.datasets["val"]
    for j in range(len(dataset)):  # evaluation raises at once on RGB and flow of different sizes
        sample = dataset[j]
        assert sample["rgb"].shape[-2:] == sample["flow"].shape[-2:]
