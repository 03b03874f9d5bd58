"""Phone videos: a display matrix turns the stored picture for display. Every decoder (flow
extraction's pyav and decord, the training readers decord, torchcodec and rawframes) gives
the same upright frames for 0/90/180/270 degrees, what FFmpeg's player shows, and flow is
computed on them."""

import json
import struct
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_flow_extract import stored_flow

from datamodules.decoding import create_reader
from flow.extract import ExtractionConfig, VideoError, extract_video, open_video
from flow.meta import read_meta
from flow.store import FolderFlowStore

# Stored width x height: not square, so a missed quarter turn changes the shape. (decord 0.6
# mis-shapes frames 48 or 72 px wide, so the sizes avoid those widths in both orientations.)
WIDTH, HEIGHT = 96, 64
FRAMES, SPEED = 6, 2
ROTATIONS = [0, 90, 180, 270]
RED = (0, 0, 255)  # BGR: a mark in the stored picture's top-left corner


def write_marked_video(path: Path) -> Path:
    """A blurred texture sliding right by SPEED px per frame, a red block in the top-left corner."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((HEIGHT, WIDTH + SPEED * FRAMES)) * 255).astype(np.uint8), (5, 5), 1.5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (WIDTH, HEIGHT))
    for t in range(FRAMES):
        start = SPEED * (FRAMES - t)  # the window moves left over the texture: the content moves right
        frame = cv2.cvtColor(np.ascontiguousarray(texture[:, start : start + WIDTH]), cv2.COLOR_GRAY2BGR)
        frame[:12, :16] = RED
        writer.write(frame)
    writer.release()
    return path


def probed_rotation(video: Path) -> int:
    """The display rotation ffprobe reports (counter-clockwise degrees, 0..359)."""
    command = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream_side_data=rotation",
               "-of", "json", str(video)]  # fmt: skip
    streams = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)["streams"]
    return round(sum(side.get("rotation", 0) for side in streams[0].get("side_data_list", []))) % 360


def rotated_copy(source: Path, target: Path, degrees: int) -> Path:
    """``source`` stream-copied into ``target`` (mp4) with a display matrix turning it ``degrees``
    counter-clockwise: FFmpeg >= 6 has ``-display_rotation``; older ones (Debian 12's 5.1) write
    the mp4 muxer's ``rotate`` tag as a display matrix."""
    ffmpeg = ["ffmpeg", "-v", "error", "-y"]
    attempts = [
        [*ffmpeg, "-display_rotation", str(degrees), "-i", str(source), "-c", "copy", str(target)],
        [*ffmpeg, "-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(target)],
    ]
    for command in attempts:
        if subprocess.run(command, capture_output=True).returncode == 0 and probed_rotation(target) == degrees:
            return target
    pytest.fail(f"this FFmpeg wrote no {degrees}-degree display rotation into {target}")


def with_display_matrix(source: Path, target: Path, matrix: tuple[int, ...]) -> Path:
    """``source`` (an mp4 with one track) with ``matrix`` written into its track header, the way
    a camera app writes one (FFmpeg 5.1 has no option for a mirroring matrix)."""
    data = bytearray(source.read_bytes())
    header = data.index(b"tkhd")
    assert data[header + 4] == 0, "version-0 track header expected"
    # After the version and flags: times, track id, duration, reserved, layer... then the matrix.
    offset = header + 8 + 20 + 8 + 8
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    target.write_bytes(bytes(data))
    return target


def ffmpeg_rgb(video: Path, autorotate: bool = True) -> np.ndarray:
    """Every frame as FFmpeg's command line decodes it (by default turned as a player shows it)."""
    command = ["ffmpeg", "-v", "error", *([] if autorotate else ["-noautorotate"]), "-i", str(video),
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # fmt: skip
    data = np.frombuffer(subprocess.run(command, check=True, capture_output=True).stdout, np.uint8)
    turned = autorotate and probed_rotation(video) in (90, 270)
    height, width = (WIDTH, HEIGHT) if turned else (HEIGHT, WIDTH)
    return data.reshape(-1, height, width, 3)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("rotated")
    source = write_marked_video(root / "stored.mp4")
    return {degrees: rotated_copy(source, root / f"rotated_{degrees}.mp4", degrees) for degrees in ROTATIONS}


@pytest.fixture(scope="module")
def stored(videos) -> np.ndarray:
    """The stored pictures, not turned: (FRAMES, HEIGHT, WIDTH, 3) RGB."""
    return ffmpeg_rgb(videos[0])


def upright(frames: np.ndarray, degrees: int) -> np.ndarray:
    """(T, H, W, C) frames turned ``degrees`` counter-clockwise."""
    return np.rot90(frames, degrees // 90, axes=(1, 2))


def assert_same_pictures(actual: np.ndarray, expected: np.ndarray, tolerance: float = 2.0) -> None:
    # Decoders convert YUV to RGB slightly differently; a wrong turn differs by tens of levels.
    assert actual.shape == expected.shape
    assert np.abs(actual.astype(int) - expected).mean() < tolerance


def red_corner(frame: np.ndarray) -> str:
    """Where the red mark is in an RGB frame: 'top-left', 'bottom-right', ..."""
    rows, cols = np.nonzero((frame[..., 0] > 150) & (frame[..., 2] < 100))
    height, width = frame.shape[:2]
    return f"{'top' if rows.mean() < height / 2 else 'bottom'}-{'left' if cols.mean() < width / 2 else 'right'}"


@pytest.mark.parametrize("degrees", ROTATIONS)
def test_upright_is_what_ffmpeg_shows(videos, stored, degrees):
    shown = ffmpeg_rgb(videos[degrees])
    assert_same_pictures(shown, upright(stored, degrees), tolerance=0.5)
    corner = {0: "top-left", 90: "bottom-left", 180: "bottom-right", 270: "top-right"}[degrees]
    assert red_corner(shown[0]) == corner
    assert_same_pictures(ffmpeg_rgb(videos[degrees], autorotate=False), stored, tolerance=0.5)


@pytest.mark.parametrize("degrees", ROTATIONS)
@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_extraction_frames_are_upright(videos, stored, decoder, degrees):
    frames = open_video(videos[degrees], ExtractionConfig(short_side=0, decoder=decoder), gray=True, rgb=True)
    expected = upright(stored, degrees)
    assert frames.size == frames.source_size == (expected.shape[2], expected.shape[1])
    decoded = list(frames)
    assert_same_pictures(np.stack([frame.rgb for frame in decoded]), expected)
    gray = np.stack([cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY) for image in expected])
    assert_same_pictures(np.stack([frame.gray for frame in decoded]), gray)


@pytest.mark.parametrize("degrees", [90, 270])
def test_pyav_resizes_to_the_upright_size(videos, stored, degrees):
    frames = open_video(videos[degrees], ExtractionConfig(short_side=32), gray=False, rgb=True)
    assert frames.source_size == (HEIGHT, WIDTH) and frames.size == (32, 48)
    expected = [cv2.resize(np.ascontiguousarray(image), (32, 48), interpolation=cv2.INTER_AREA)
                for image in upright(stored, degrees)]  # fmt: skip
    assert_same_pictures(np.stack([frame.rgb for frame in frames]), np.stack(expected), tolerance=3)


@pytest.mark.parametrize("degrees", ROTATIONS)
@pytest.mark.parametrize("reader", ["decord", "torchcodec"])
def test_training_readers_are_upright(videos, stored, reader, degrees):
    frames = create_reader(reader).read_frames(videos[degrees], [4, 0])
    assert_same_pictures(frames, upright(stored, degrees)[[4, 0]])


@pytest.mark.parametrize("degrees", ROTATIONS)
def test_flow_is_computed_on_upright_frames(videos, stored, tmp_path, degrees):
    config = ExtractionConfig(algorithm="dis", short_side=0, rgb=True)
    extract_video(videos[degrees], tmp_path / "v", config)
    meta = read_meta(tmp_path / "v")
    expected = upright(stored, degrees)
    assert (meta.width, meta.height) == (expected.shape[2], expected.shape[1])
    # The stored content moves right; turned counter-clockwise, so does its motion.
    motion = {0: (SPEED, 0), 90: (0, -SPEED), 180: (-SPEED, 0), 270: (0, SPEED)}[degrees]
    flow = stored_flow(tmp_path / "v")
    assert flow.shape == (FRAMES - 1, 2, expected.shape[1], expected.shape[2])
    assert np.median(flow[:, 0]) == pytest.approx(motion[0], abs=0.5)
    assert np.median(flow[:, 1]) == pytest.approx(motion[1], abs=0.5)
    # The frames written beside the flow are the same upright frames (rawframes reads them).
    rawframes = create_reader("rawframes", store=FolderFlowStore(tmp_path)).read_frames("v", [0, 4])
    assert_same_pictures(rawframes, expected[[0, 4]], tolerance=3)  # + JPEG


F = 65536  # 1.0 in the display matrix's 16.16 fixed point
W = 1 << 30  # 1.0 in 2.30
MIRRORING = {
    "mirrored left-right": (-F, 0, 0, 0, F, 0, WIDTH * F, 0, W),
    "mirrored top-bottom": (F, 0, 0, 0, -F, 0, 0, HEIGHT * F, W),
    "transposed": (0, F, 0, F, 0, 0, 0, 0, W),
}


@pytest.mark.parametrize("matrix", MIRRORING.values(), ids=MIRRORING.keys())
def test_a_mirroring_matrix_is_read_alike_by_every_decoder(videos, tmp_path, matrix):
    # decord and torchcodec apply a mirroring matrix's rotation and not its mirror; extraction
    # does the same, so flow and RGB still line up.
    video = with_display_matrix(videos[0], tmp_path / "mirrored.mp4", matrix)
    reference = create_reader("decord").read_frames(video, list(range(FRAMES)))
    assert_same_pictures(create_reader("torchcodec").read_frames(video, list(range(FRAMES))), reference)
    for decoder in ("pyav", "decord"):
        frames = open_video(video, ExtractionConfig(short_side=0, decoder=decoder), gray=False, rgb=True)
        assert_same_pictures(np.stack([frame.rgb for frame in frames]), reference)


def test_a_rotation_between_quarter_turns_is_refused(videos, tmp_path):
    c = round(F * np.sqrt(0.5))
    video = with_display_matrix(videos[0], tmp_path / "tilted.mp4", (c, -c, 0, c, c, 0, 0, 0, W))
    with pytest.raises(VideoError, match="rotates by -?45.0 degrees, not a multiple of 90"):
        open_video(video, ExtractionConfig(short_side=0))
