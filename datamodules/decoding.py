"""Reading RGB frames: from video files (decord, torchcodec) or pre-extracted JPEG frames.

Every reader offers ``read_frames(path, indices) -> uint8 (T, H, W, 3) RGB`` and
``num_frames(path)``, and raises ``VideoDecodeError`` on an unreadable video whatever the
backend, so a dataset can catch one exception type and replace the sample.

Frame counts stored elsewhere (an index built from container headers, OpenCV's
``CAP_PROP_FRAME_COUNT``, a frames folder's ``meta.json``) over-report the frames a decoder
can actually deliver for some files (variable frame rate, truncated downloads, headers
estimated from duration x fps). Indices are therefore clamped to the length the decoder
reports when the video is opened: asking for frame 300 of a 298-frame video gives frame 297.

Frames are upright: decord (0.6) and torchcodec (from 0.11) apply a phone video's display
rotation, and flow extraction does the same (``flow.orientation``), so a video's RGB frames,
its extracted frames (rawframes) and its flow fields all agree.

Frames come as decoded: the short-side resize happens once, in ``transforms.Augment``,
where the scale applied to the flow is tracked too.

``decoder: torchcodec_cuda`` decodes with torchcodec on the GPU (NVDEC) and hands the same
host uint8 frames back (colour conversion may differ from the CPU's by a level). A process
forked after CUDA was initialised cannot use CUDA, and DataLoader workers are forked on
Linux by default, after Lightning has put the model on the GPU: such a reader says so
(``worker_start_method = "spawn"``, for the DataLoader's ``multiprocessing_context``), and
refuses to decode in a forked worker (``DecoderUnusable``) rather than failing every video.
Each spawned worker holds its own CUDA context (a few hundred MiB of GPU memory). ``cuda``
is the GPU this process computes on when the reader is built (a DataModule's ``setup`` runs
after Lightning has set each rank's device), else ``cuda:LOCAL_RANK`` under torchrun
(``flow.sharding.process_device``); workers inherit the resolved device. A video NVDEC
cannot decode (codec, profile) is decoded on the CPU by torchcodec, with one warning per
process naming the reason.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import decord
import numpy as np

from flow.sharding import process_device
from flow.store import FolderFlowStore

log = logging.getLogger(__name__)


class VideoDecodeError(RuntimeError):
    """A video (or frames folder) could not be read; ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path}: {reason}")


class DecoderUnusable(RuntimeError):
    """A decoder setting that cannot work in this process (no CUDA device, CUDA in a forked
    DataLoader worker, a torchcodec without CUDA support): a configuration error, never taken
    for an unreadable video (it is none of ``datasets.READ_ERRORS``, so it stops the run)."""


class FrameReader(ABC):
    """Shared logic: index checks, clamping, decoding each distinct frame once.

    Subclasses open a source, report its length and decode a sorted list of distinct indices.
    No decoder is kept between calls: decord leaks memory when readers are cached across
    samples, and DataLoader workers would otherwise hold one open file per video.
    """

    # Exceptions a backend raises for an unreadable source; turned into VideoDecodeError.
    errors: tuple[type[BaseException], ...] = (RuntimeError, ValueError, OSError)
    # The start method DataLoader workers need (``multiprocessing_context``); None: any.
    worker_start_method: str | None = None

    @abstractmethod
    def _open(self, path: str) -> Any: ...

    @abstractmethod
    def _length(self, source: Any) -> int: ...

    @abstractmethod
    def _decode(self, source: Any, indices: list[int]) -> np.ndarray:
        """Frames at sorted distinct ``indices`` as uint8 (len(indices), H, W, 3) RGB."""

    @contextmanager
    def _opened(self, path: str | Path) -> Iterator[Any]:
        source = None
        try:
            source = self._open(str(path))
            yield source
        except (VideoDecodeError, DecoderUnusable):
            raise
        except self.errors as error:
            raise VideoDecodeError(path, f"{type(error).__name__}: {error}") from error
        finally:
            del source  # release the decoder now, not when a traceback lets go of it

    def num_frames(self, path: str | Path) -> int:
        with self._opened(path) as source:
            return self._length(source)

    def read_frames(self, path: str | Path, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` (any order, repeats allowed) as uint8 (len(indices), H, W, 3) RGB."""
        wanted = np.asarray(indices, dtype=np.int64)
        if wanted.ndim != 1 or wanted.size == 0:
            raise ValueError(f"indices must be a non-empty 1-D sequence, got shape {wanted.shape}")
        if wanted.min() < 0:
            raise IndexError(f"negative frame index {wanted.min()} for {path}")
        with self._opened(path) as source:
            length = self._length(source)
            if length < 1:
                raise VideoDecodeError(path, "no frames")
            distinct, order = np.unique(np.minimum(wanted, length - 1), return_inverse=True)
            frames = self._decode(source, distinct.tolist())
        if frames.ndim != 4 or frames.shape[0] != distinct.size or frames.shape[3] != 3:
            raise VideoDecodeError(path, f"decoder returned shape {frames.shape} for {distinct.size} frames")
        order = order.reshape(-1)
        if not np.array_equal(order, np.arange(distinct.size)):  # skip a ~15 MB copy for in-order clips
            frames = frames[order]
        return frames

    def decode_all(self, path: str | Path, start: int = 0, chunk: int = 32) -> Iterator[tuple[int, int]]:
        """Decode every frame from ``start`` on, in order, ``chunk`` at a time from one opened
        decoder (a seek per chunk would redecode from the keyframe); yields (first frame of
        the chunk, frame count) after each chunk decodes. A frame that does not decode raises
        ``VideoDecodeError`` (``python -m datamodules check --decode``)."""
        with self._opened(path) as source:
            length = self._length(source)
            for first in range(start, length, chunk):
                indices = list(range(first, min(first + chunk, length)))
                frames = self._decode(source, indices)
                if frames.ndim != 4 or frames.shape[0] != len(indices):
                    raise VideoDecodeError(path, f"decoder returned shape {frames.shape} for {len(indices)} frames")
                yield first, length


class DecordReader(FrameReader):
    """decord, one thread per reader (DataLoader workers supply the parallelism)."""

    errors = FrameReader.errors + (decord.DECORDError,)

    def _open(self, path: str) -> decord.VideoReader:
        return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)

    def _length(self, source: decord.VideoReader) -> int:
        return len(source)

    def _decode(self, source: decord.VideoReader, indices: list[int]) -> np.ndarray:
        return source.get_batch(indices).asnumpy()


# The first torchcodec that applies a video's display rotation (older ones return phone
# videos sideways, which would not line up with their flow).
TORCHCODEC_MIN_VERSION = (0, 11)


class TorchcodecReader(FrameReader):
    """PyTorch's decoder (FFmpeg underneath); ``seek_mode="exact"`` scans the file, so its
    length is the true frame count rather than the header's estimate.

    Args:
        device: ``cpu``, or ``cuda`` / ``cuda:N`` for torchcodec's NVDEC decoder (the data
            setting ``decoder: torchcodec_cuda``); frames come back to the host either way.
    """

    errors = FrameReader.errors + (IndexError,)

    def __init__(self, device: str = "cpu"):
        try:
            import torchcodec
            from torchcodec.decoders import VideoDecoder
        except (ImportError, RuntimeError, OSError) as error:  # RuntimeError/OSError: FFmpeg libraries missing
            raise ImportError(
                "the torchcodec frame reader needs torchcodec and FFmpeg: "
                "`pip install '.[torchcodec]'` and install FFmpeg (e.g. `apt-get install ffmpeg`); "
                f"import failed with: {error}"
            ) from error
        version = tuple(int(part) for part in re.findall(r"\d+", torchcodec.__version__)[:2])
        if version < TORCHCODEC_MIN_VERSION:
            raise ImportError(
                f"torchcodec {torchcodec.__version__} ignores a video's display rotation (phone videos come out "
                f"sideways); the torchcodec frame reader needs torchcodec >= "
                f"{'.'.join(map(str, TORCHCODEC_MIN_VERSION))}: `pip install '.[torchcodec]'`")
        self._decoder_class = VideoDecoder
        self.device = device
        if device != "cpu":
            check_cuda_decoding(device)
            self.device = cuda_decoding_device(device)
            self.worker_start_method = "spawn"

    def _create(self, path: str, device: str) -> Any:
        return self._decoder_class(path, device=device, dimension_order="NHWC", num_ffmpeg_threads=1,
                                   seek_mode="exact")

    def _open(self, path: str) -> Any:
        if self.device == "cpu":
            return self._create(path, "cpu")
        refuse_forked_cuda()
        try:
            decoder = self._create(path, self.device)
        except self.errors as error:
            # An unreadable video fails on the CPU too; one the CPU reads is the GPU decoder's
            # failure, which would fail every video: stop instead of replacing them all.
            try:
                self._create(path, "cpu")
            except self.errors:
                raise error from None
            raise DecoderUnusable(
                f"decoder {CUDA_READER!r}: torchcodec's CUDA decoder cannot open {path} ({error}), which its CPU "
                f"decoder reads. Is this torchcodec built with CUDA (PyPI's wheels are CPU-only: install it from "
                f"PyTorch's CUDA index)? Were the DataLoader workers forked (use 'spawn')? `decoder: torchcodec` "
                f"decodes on the CPU") from error
        warn_once_on_cpu_fallback(decoder)
        return decoder

    def _length(self, source: Any) -> int:
        return len(source)

    def _decode(self, source: Any, indices: list[int]) -> np.ndarray:
        return source.get_frames_at(indices).data.cpu().numpy()


CUDA_READER = "torchcodec_cuda"  # the data setting `decoder` that decodes on the GPU
_warned_cpu_fallback = False  # one warning per process (each DataLoader worker warns once)


def check_cuda_decoding(device: str) -> None:
    """Refuses a CUDA decoding ``device`` this process cannot use, naming the setting."""
    import torch

    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise ValueError(f"torchcodec reader device must be cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise DecoderUnusable(
            f"decoder {CUDA_READER!r} decodes on a CUDA GPU, but torch sees none (torch.cuda.is_available() is "
            f"False); use `decoder: torchcodec` (or auto) to decode on the CPU")


def cuda_decoding_device(device: str) -> str:
    """``cuda`` made explicit for the workers the reader is sent to (they start on GPU 0):
    this process's current GPU where CUDA is initialised (in a Trainer, each rank's own),
    else ``cuda:LOCAL_RANK`` under torchrun; ``cuda:N`` unchanged."""
    import torch

    if device != "cuda":
        return device
    if torch.cuda.is_initialized():
        return f"cuda:{torch.cuda.current_device()}"
    return process_device(device)


def refuse_forked_cuda() -> None:
    """Stops a CUDA decoder in a process forked after CUDA was initialised, which cannot use CUDA."""
    import torch

    in_bad_fork = getattr(torch.cuda, "_is_in_bad_fork", lambda: False)
    if in_bad_fork():
        raise DecoderUnusable(
            f"decoder {CUDA_READER!r} cannot decode in a DataLoader worker forked after CUDA was initialised "
            f"(Linux's default start method): start the workers with 'spawn' (DataLoader "
            f"multiprocessing_context=reader.worker_start_method) or decode in the main process (num_workers: 0)")


def warn_once_on_cpu_fallback(decoder: Any) -> None:
    """Warns (once per process) when torchcodec decodes a video on the CPU although asked for CUDA."""
    global _warned_cpu_fallback
    status = getattr(decoder, "cpu_fallback", None)  # torchcodec >= 0.9
    if _warned_cpu_fallback or status is None or not bool(status):
        return
    _warned_cpu_fallback = True
    log.warning("decoder %s: torchcodec decodes some videos on the CPU, not with NVDEC (%s); their frames are "
                "the same, only slower", CUDA_READER, status)


class RawFrameReader(FrameReader):
    """Pre-extracted JPEG frames (``img_00001.jpg``...) read through the flow store;
    ``path`` is the video id."""

    def __init__(self, store: FolderFlowStore):
        self.store = store

    def _open(self, path: str) -> str:
        return path

    def _length(self, source: str) -> int:
        return self.store.num_rgb(source)

    def _decode(self, source: str, indices: list[int]) -> np.ndarray:
        return self.store.read_rgb(source, indices)


READERS: dict[str, Callable[..., FrameReader]] = {
    "decord": DecordReader,
    "torchcodec": TorchcodecReader,
    CUDA_READER: partial(TorchcodecReader, device="cuda"),
    "rawframes": RawFrameReader,
}


def create_reader(name: str, **kwargs: Any) -> FrameReader:
    """The frame reader named by the data setting ``decoder``: decord, torchcodec,
    torchcodec_cuda (torchcodec on the GPU; never chosen by auto), rawframes, or auto: torchcodec where it imports (it decoded 1.6x faster than decord here, see the
    decoder benchmark, docs/benchmarks.md), else decord, whose wheel needs no system FFmpeg."""
    if name == "auto":
        try:
            return TorchcodecReader(**kwargs)
        except ImportError as error:
            log.info("decoder auto: torchcodec unavailable (%s); using decord", error)
            return DecordReader(**kwargs)
    try:
        reader_class = READERS[name]
    except KeyError:
        choices = sorted([*READERS, "auto"])
        raise ValueError(f"unknown frame reader {name!r} (setting `decoder`); choose one of {choices}") from None
    return reader_class(**kwargs)
