from pathlib import Path

import cv2
import numpy as np
import pytest

from datamodules.decoding import (
    DecordReader,
    RawFrameReader,
    VideoDecodeError,
    create_reader,
)
from flow.codec import encode_jpeg
from flow.store import FolderFlowStore

FRAMES = 12
HEIGHT, WIDTH = 48, 64


def level(i: int) -> int:
    """Frame i is a flat colour: red = level(i), blue = 255 - level(i)."""
    return 10 + 20 * i


def frame_ids(frames: np.ndarray) -> list[int]:
    """Which frame each decoded (H, W, 3) RGB frame is, read back from its red level."""
    return [int(round((frame[..., 0].mean() - 10) / 20)) for frame in frames]


def write_video(path: Path, fourcc: str) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (WIDTH, HEIGHT))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    for i in range(FRAMES):
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        frame[..., 2], frame[..., 0] = level(i), 255 - level(i)  # BGR
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module", params=[("avi", "XVID"), ("mp4", "mp4v")], ids=["avi", "mp4"])
def video(request, tmp_path_factory) -> Path:
    suffix, fourcc = request.param
    return write_video(tmp_path_factory.mktemp("videos") / f"tiny.{suffix}", fourcc)


def test_frames_are_rgb_in_the_requested_order(video):
    reader = DecordReader()
    assert reader.num_frames(video) == FRAMES
    frames = reader.read_frames(video, [0, 5, 11])
    assert frames.shape == (3, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
    assert frame_ids(frames) == [0, 5, 11]
    assert abs(frames[1, ..., 2].mean() - (255 - level(5))) < 4  # blue channel last: RGB


@pytest.mark.parametrize("indices", [[7, 2, 7, 0, 2, 11], [9, 3, 5]])
def test_repeated_and_unsorted_indices_are_gathered(video, indices):
    assert frame_ids(DecordReader().read_frames(video, indices)) == indices


def test_indices_past_the_real_length_are_clamped(video):
    # An index built from an over-reported frame count asks for frames that do not exist.
    frames = DecordReader().read_frames(video, [10, FRAMES, FRAMES + 30])
    assert frame_ids(frames) == [10, FRAMES - 1, FRAMES - 1]


def test_frames_come_as_decoded(video):
    """Readers do not resize (Augment does, once, tracking the flow's scale): no short_side."""
    frames = DecordReader().read_frames(video, [3])
    assert frames.shape[1:3] == (HEIGHT, WIDTH) and frame_ids(frames) == [3]
    with pytest.raises(TypeError):
        DecordReader(short_side=24)


def test_torchcodec_reads_the_same_frames(video):
    indices = [11, 0, 4, 4]
    decord_frames = DecordReader().read_frames(video, indices)
    torchcodec_frames = create_reader("torchcodec").read_frames(video, indices)
    assert torchcodec_frames.shape == decord_frames.shape
    # Both use FFmpeg's decoders; colour conversion may differ by a level or two.
    assert np.abs(torchcodec_frames.astype(int) - decord_frames).mean() < 2


@pytest.mark.parametrize("name", ["decord", "torchcodec"])
def test_corrupt_or_missing_video_raises_video_decode_error(tmp_path, name):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 100)
    reader = create_reader(name)
    for path in (corrupt, tmp_path / "missing.avi"):
        with pytest.raises(VideoDecodeError, match=path.name) as caught:
            reader.read_frames(path, [0])
        assert caught.value.path == str(path)


def test_negative_and_empty_indices_are_refused(video):
    with pytest.raises(IndexError):
        DecordReader().read_frames(video, [-1])
    with pytest.raises(ValueError):
        DecordReader().read_frames(video, [])


def test_unknown_reader_names_the_setting():
    with pytest.raises(ValueError, match="decoder.*decord"):
        create_reader("decrod")


def test_auto_prefers_torchcodec_and_falls_back_to_decord(monkeypatch):
    from datamodules import decoding

    assert isinstance(create_reader("auto"), decoding.TorchcodecReader)

    def unavailable(*args, **kwargs):
        raise ImportError("no FFmpeg libraries")

    monkeypatch.setattr(decoding.TorchcodecReader, "__init__", unavailable)
    assert isinstance(create_reader("auto"), DecordReader)


def test_rawframes_read_through_the_store(tmp_path):
    store = FolderFlowStore(tmp_path)
    folder = tmp_path / "class" / "vid"
    folder.mkdir(parents=True)
    for k in range(5):
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        frame[..., 0] = level(k)
        store.layout.rgb_path(folder, k).write_bytes(encode_jpeg(frame))
    reader = create_reader("rawframes", store=store)
    assert isinstance(reader, RawFrameReader) and reader.num_frames("class/vid") == 5
    assert frame_ids(reader.read_frames("class/vid", [4, 1, 1, 9])) == [4, 1, 1, 4]
    store.layout.rgb_path(folder, 2).write_bytes(b"broken")
    with pytest.raises(VideoDecodeError, match="class/vid"):
        reader.read_frames("class/vid", [2])


def test_torchcodec_that_ignores_display_rotation_is_refused(monkeypatch):
    # Before 0.11 torchcodec returned phone videos sideways, unlike their flow.
    import torchcodec

    monkeypatch.setattr(torchcodec, "__version__", "0.10.0+cpu")
    with pytest.raises(ImportError, match=r"torchcodec 0.10.0\+cpu ignores a video's display rotation.*>= 0.11"):
        create_reader("torchcodec")
    assert isinstance(create_reader("auto"), DecordReader)
