import pickle
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules import decoding
from datamodules.datasets import READ_ERRORS
from datamodules.decoding import (
    DecoderUnusable,
    DecordReader,
    RawFrameReader,
    TorchcodecReader,
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


# The CUDA decoder (`decoder: torchcodec_cuda`). Where CUDA is absent its refusals are tested
# with torch's answers replaced; the decoding itself runs in the gpu-marked tests below.


@pytest.fixture
def cuda_looks_available(monkeypatch):
    """torch claiming a CUDA device, so the reader can be built on a machine without one."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_cuda_decoder_without_cuda_names_the_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DecoderUnusable, match=r"decoder 'torchcodec_cuda'.*is_available\(\) is False.*decoder: torchcodec"):
        create_reader("torchcodec_cuda")


def test_cuda_decoder_asks_workers_to_spawn(cuda_looks_available, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    reader = create_reader("torchcodec_cuda")
    assert isinstance(reader, TorchcodecReader) and reader.device == "cuda"
    assert reader.worker_start_method == "spawn"
    assert create_reader("torchcodec").worker_start_method is None and DecordReader().worker_start_method is None
    # A spawned worker gets the reader pickled.
    assert pickle.loads(pickle.dumps(reader)).device == "cuda"


def test_cuda_decoder_decodes_on_this_process_gpu(cuda_looks_available, monkeypatch):
    """Workers start on GPU 0: the reader names the rank's GPU, the one Lightning set (CUDA
    initialised), else torchrun's LOCAL_RANK."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert create_reader("torchcodec_cuda").device == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert create_reader("torchcodec_cuda").device == "cuda:3"
    assert TorchcodecReader(device="cuda:2").device == "cuda:2"


def test_reader_device_must_be_cpu_or_cuda():
    with pytest.raises(ValueError, match="cpu, cuda or cuda:N.*'gpu'"):
        TorchcodecReader(device="gpu")


def test_cuda_decoder_in_a_forked_worker_is_refused(video, cuda_looks_available, monkeypatch):
    """A process forked after CUDA was initialised cannot use CUDA: stop, saying what to do,
    rather than report every video unreadable."""
    reader = create_reader("torchcodec_cuda")
    monkeypatch.setattr(torch.cuda, "_is_in_bad_fork", lambda: True)
    with pytest.raises(DecoderUnusable, match=r"forked after CUDA was initialised.*'spawn'.*num_workers: 0"):
        reader.read_frames(video, [0])


def cuda_decoder_fails(reader: TorchcodecReader, monkeypatch) -> None:
    """The reader's CUDA decoder fails to open anything, as a CPU-only torchcodec build does."""
    create = reader._create

    def create_on_cpu_only(path: str, device: str):
        if device != "cpu":
            raise RuntimeError(f"Unsupported device: {device}")
        return create(path, device)

    monkeypatch.setattr(reader, "_create", create_on_cpu_only)


def test_a_cuda_decoder_that_cannot_open_what_the_cpu_reads_stops_the_run(video, cuda_looks_available, monkeypatch):
    reader = create_reader("torchcodec_cuda")
    cuda_decoder_fails(reader, monkeypatch)
    with pytest.raises(DecoderUnusable, match=r"cannot open .*Unsupported device: cuda.*CPU decoder reads") as caught:
        reader.read_frames(video, [0])
    # Not an unreadable video: datasets replace those, which would replace every video.
    assert not isinstance(caught.value, READ_ERRORS)


def test_a_video_unreadable_on_the_cpu_too_stays_a_decode_error(tmp_path, cuda_looks_available, monkeypatch):
    reader = create_reader("torchcodec_cuda")
    cuda_decoder_fails(reader, monkeypatch)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodeError, match="corrupt.mp4.*Unsupported device"):
        reader.read_frames(corrupt, [0])


def test_cpu_fallback_is_warned_once_per_process(monkeypatch, caplog):
    class Fallback:
        def __bool__(self):
            return True

        def __str__(self):
            return "[CUDA] Fallback status: Falling back due to: Video not supported"

    decoder = type("Decoder", (), {"cpu_fallback": Fallback()})()
    monkeypatch.setattr(decoding, "_warned_cpu_fallback", False)
    with caplog.at_level("WARNING", logger="datamodules.decoding"):
        decoding.warn_once_on_cpu_fallback(decoder)
        decoding.warn_once_on_cpu_fallback(decoder)
    assert [record.getMessage().count("Video not supported") for record in caplog.records] == [1]


def write_h264(path: Path, size: tuple[int, int] = (320, 240)) -> Path:
    """The level-coded frames of ``write_video`` as H.264 (yuv420p), a codec NVDEC decodes."""
    width, height = size
    frames = np.zeros((FRAMES, height, width, 3), np.uint8)
    for i in range(FRAMES):
        frames[i, ..., 0], frames[i, ..., 2] = level(i), 255 - level(i)  # RGB
    command = ["/usr/bin/ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
               f"{width}x{height}", "-r", "25", "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, input=frames.tobytes(), check=True)
    return path


def test_h264_video_for_the_gpu_tests_reads_on_the_cpu(tmp_path):
    frames = create_reader("torchcodec").read_frames(write_h264(tmp_path / "h264.mp4"), [0, 6, 11])
    assert frames.shape == (3, 240, 320, 3) and frame_ids(frames) == [0, 6, 11]


@pytest.mark.gpu
def test_cuda_decoder_reads_the_cpu_frames(tmp_path):
    path = write_h264(tmp_path / "h264.mp4")
    indices = [11, 0, 4, 4, 7]
    cuda = create_reader("torchcodec_cuda")
    cuda_frames = cuda.read_frames(path, indices)
    cpu_frames = create_reader("torchcodec").read_frames(path, indices)
    assert cuda_frames.dtype == np.uint8 and cuda_frames.shape == cpu_frames.shape == (5, 240, 320, 3)
    assert frame_ids(cuda_frames) == indices
    # NVDEC decodes the same pictures; only the YUV -> RGB conversion may round differently.
    assert np.abs(cuda_frames.astype(int) - cpu_frames).mean() < 2
    with cuda._opened(path) as decoder:
        assert not decoder.cpu_fallback, str(decoder.cpu_fallback)  # NVDEC did decode it


class CudaDecodedVideo(torch.utils.data.Dataset):
    """Frame i of one video, decoded by a CUDA reader in each DataLoader worker."""

    def __init__(self, path: Path):
        self.path, self.reader = path, create_reader("torchcodec_cuda")

    def __len__(self) -> int:
        return FRAMES

    def __getitem__(self, index: int) -> np.ndarray:
        return self.reader.read_frames(self.path, [index])[0]


@pytest.mark.gpu
def test_cuda_decoder_in_dataloader_workers(tmp_path):
    """After CUDA is initialised (as when the model is on the GPU), forked workers are refused
    by name and spawned ones (the reader's worker_start_method) decode."""
    dataset = CudaDecodedVideo(write_h264(tmp_path / "h264.mp4"))
    torch.zeros(1, device="cuda")  # CUDA initialised in this process
    forked = DataLoader(dataset, batch_size=4, num_workers=1, multiprocessing_context="fork")
    with pytest.raises(DecoderUnusable, match="forked after CUDA was initialised"):
        next(iter(forked))
    spawned = DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context=dataset.reader.worker_start_method)
    frames = torch.cat(list(spawned)).numpy()
    assert frame_ids(frames) == list(range(FRAMES))
