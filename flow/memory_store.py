"""Flow held in memory: extracted exactly as to a folder, read through the store interface.

Inference on a user's video (``inference/scoring.py``) needs the flow a model was trained
on, not an approximation of it: the same algorithm and parameters, the same quantization
bound, the same JPEG round trip. ``MemoryFlowStore.extract`` runs the one extraction path
(``flow.extract.extract_video``) with a ``MemoryOutput`` in place of a folder or a pack,
so every file is the bytes the extractor would have written, meta.json included; reads go
through ``FolderFlowStore``'s own methods (``read_fields``, ``read_rgb``, ``meta``), which
the datamodules' ``VideoDataset`` calls. Nothing touches the disk.

A video may also be registered as a span of another one (``add_span``): its meta.json is
the original's with the start index moved, so field k of the span is field ``first + k`` of
the video, read from the same bytes. Sliding windows over a long video cost no copy.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flow.frames import VideoError
from flow.meta import FlowMeta
from flow.outputs import VideoOutput
from flow.store import FolderFlowStore, decode_image
from flow.summary import VideoResult

if TYPE_CHECKING:
    from flow.algorithms import FlowAlgorithm
    from flow.extraction_config import ExtractionConfig

# A name for messages and paths; nothing is ever read or written there.
MEMORY_ROOT = Path("<memory>")


class MemoryOutput(VideoOutput):
    """One video's extracted files kept as bytes, by file name; meta.json once ``finish`` ran.

    No lock and no temporary name: nothing on disk, and nobody else can see it.
    """

    def __init__(self) -> None:  # VideoOutput's own __init__ claims a lock on a path: none here
        self.final = None
        self.files: dict[str, bytes] = {}
        self.meta: FlowMeta | None = None
        self._guard = threading.Lock()  # the extraction's writer thread(s)

    def is_complete(self) -> bool:
        return self.meta is not None

    def write(self, name: str, data: bytes) -> int:
        with self._guard:
            self.files[name] = data
        return len(data)

    def finish(self, meta: FlowMeta) -> None:
        self._complete(meta)

    def discard(self) -> None:
        self._discard()

    def _complete(self, meta: FlowMeta) -> None:
        self.meta = meta

    def _discard(self) -> None:
        self.files.clear()
        self.meta = None


class MemoryFlowStore(FolderFlowStore):
    """Videos' flow (and RGB frames) held in memory, read as ``FolderFlowStore`` reads folders.

    A video's "folder" is ``<memory>/<video_id>``, a name for messages only.
    """

    def __init__(self) -> None:
        super().__init__(MEMORY_ROOT)
        self._files: dict[str, dict[str, bytes]] = {}
        self._described: dict[str, FlowMeta] = {}

    def extract(self, video_path: Path | str, video_id: str, config: ExtractionConfig,
                algorithms: list[FlowAlgorithm] | None = None) -> VideoResult:
        """Extract ``video_path`` with ``config`` as video ``video_id``, its files kept here:
        ``flow.extract.extract_video``, or with ``config.batch`` > 0 ``flow.batched.BatchedRun``
        (the video's pairs B at a time: a GPU's way). Raises ``flow.frames.VideoError`` for a
        video that cannot be extracted.

        Args:
            video_path: the video file.
            video_id: the name it is read by.
            config: how to extract (algorithm, parameters, short side, step, bound, quality...).
            algorithms: instances to reuse over videos (the batched path takes the first);
                default ``config.create_algorithms()``.
        """
        output = MemoryOutput()
        target = MEMORY_ROOT / video_id
        if config.batch:
            from flow.batched import BatchedRun  # imports torch
            from flow.video_run import Job

            with BatchedRun(config, algorithms[0] if algorithms else None, outputs=lambda job: output) as run:
                [(_, result)] = list(run.outcomes([Job(str(video_path), Path(video_path), target)]))
            if not isinstance(result, VideoResult):
                raise VideoError(str(result))
        else:
            from flow.extract import extract_video  # the extraction machinery, only when extracting

            result = extract_video(video_path, target, config, algorithms, output=output)
        self._files[video_id], self._described[video_id] = output.files, output.meta
        self._metas.pop(video_id, None)
        return result

    def add_span(self, video_id: str, of: str, first: int, count: int) -> None:
        """Register ``video_id`` as frames ``first .. first + count - 1`` of video ``of`` (the
        fields between them): field k of the span is field ``first + k`` of ``of``.

        Args:
            video_id: the span's name.
            of: a video of this store.
            first: its first (sampled) frame.
            count: frames in the span, at least 2 (one field).
        """
        meta = self.meta(of)
        if meta is None:
            raise KeyError(f"no video {of!r} in memory")
        if count < 2 or first < 0 or first + count > meta.num_frames:
            raise ValueError(f"span of {count} frames from frame {first} does not fit video {of!r} "
                             f"({meta.num_frames} frames; a span needs 2)")
        self._files[video_id] = self._files[of]
        self._described[video_id] = replace(meta, start_index=meta.start_index + first, num_frames=count,
                                            num_flows=count - 1)
        self._metas.pop(video_id, None)

    def folder(self, video_id: str) -> Path:
        return MEMORY_ROOT / video_id

    def exists(self, video_id: str) -> bool:
        return video_id in self._files

    def stamp_paths(self, video_id: str) -> list[Path]:
        return []

    def _read_meta(self, video_id: str) -> FlowMeta | None:
        return self._described.get(video_id)

    def _names(self, video_id: str) -> set[str]:
        try:
            return set(self._files[video_id])
        except KeyError:
            raise FileNotFoundError(f"no video {video_id!r} in memory") from None

    def _read_image(self, video_id: str, path: Path, color: bool) -> np.ndarray:
        try:
            data = self._files[video_id][path.name]
        except KeyError:
            raise FileNotFoundError(f"{path}: no such file in memory") from None
        return decode_image(np.frombuffer(data, dtype=np.uint8), path, color)
