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
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import decord
import numpy as np

from flow.store import FolderFlowStore

log = logging.getLogger(__name__)


class VideoDecodeError(RuntimeError):
    """A video (or frames folder) could not be read; ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path}: {reason}")


class FrameReader(ABC):
    """Shared logic: index checks, clamping, decoding each distinct frame once.

    Subclasses open a source, report its length and decode a sorted list of distinct indices.
    No decoder is kept between calls: decord leaks memory when readers are cached across
    samples, and DataLoader workers would otherwise hold one open file per video.
    """

    # Exceptions a backend raises for an unreadable source; turned into VideoDecodeError.
    errors: tuple[type[BaseException], ...] = (RuntimeError, ValueError, OSError)

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
        except VideoDecodeError:
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
    length is the true frame count rather than the header's estimate."""

    errors = FrameReader.errors + (IndexError,)

    def __init__(self):
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

    def _open(self, path: str) -> Any:
        return self._decoder_class(path, device="cpu", dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact")

    def _length(self, source: Any) -> int:
        return len(source)

    def _decode(self, source: Any, indices: list[int]) -> np.ndarray:
        return source.get_frames_at(indices).data.numpy()


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


READERS: dict[str, type[FrameReader]] = {
    "decord": DecordReader,
    "torchcodec": TorchcodecReader,
    "rawframes": RawFrameReader,
}


def create_reader(name: str, **kwargs: Any) -> FrameReader:
    """The frame reader named by the data setting ``decoder``: decord, torchcodec, rawframes,
    or auto: torchcodec where it imports (it decoded 1.6x faster than decord here, see the
    README's loader benchmark), else decord, whose wheel needs no system FFmpeg."""
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
