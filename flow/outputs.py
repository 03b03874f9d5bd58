"""Where one video's extracted files go: its folder of JPEGs, or its pack (``flow/packed.py``).

Both extraction paths (per video and batched) write through a ``VideoOutput``, so each
store is written, completed and cleaned up one way:

- opening takes the video's lock (``flow/ownership.py``): a video another live writer
  holds, or one completed since the run was planned, raises ``VideoBusy`` and is skipped;
  a killed writer's lock is taken over and its temporary output removed;
- files are written under a name of this writer's own: the folder ``<id>.tmp-<host>-<pid>/``,
  or the pack ``<id>.zip.tmp-<host>-<pid>``;
- ``finish`` writes meta.json last and renames the whole into place, so a final name
  always means complete (a kill at any moment leaves only a temporary name, which no
  reader trusts and the next run removes), then releases the lock.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flow.codec import encode_jpeg
from flow.layout import FrameLayout
from flow.meta import META_FILE, FlowMeta, json_text, write_meta
from flow.ownership import VideoBusy, claim, temporary
from flow.packed import PackWriter, pack_path
from flow.summary import VideoResult

if TYPE_CHECKING:
    from flow.extraction_config import ExtractionConfig
    from flow.frames import VideoFrames

__all__ = ["FolderOutput", "PackOutput", "VideoBusy", "VideoOutput", "clear_folder", "finish_video", "open_output",
           "write_file", "write_jpeg"]  # fmt: skip


class VideoOutput(ABC):
    """The files of one video being written; ``write`` may be called from several threads.

    Holds the video's lock from opening until ``finish`` or ``discard``.
    """

    def __init__(self, final: Path, lock_of: Path, replace: bool):
        self.final = final
        self._lock = claim(final, lock_of)
        try:
            if not replace and self.is_complete():
                raise VideoBusy("completed by another writer since this run listed it")
        except BaseException:
            self._lock.release()
            raise

    @abstractmethod
    def is_complete(self) -> bool:
        """Whether the video's output is complete under its final name."""

    @abstractmethod
    def write(self, name: str, data: bytes) -> int:
        """Store ``data`` as the file ``name`` of the video's layout; returns its size."""

    def finish(self, meta: FlowMeta) -> None:
        """Write meta.json and give the output its final name; every ``write`` must have returned."""
        try:
            self._complete(meta)
        finally:
            self._lock.release()

    def discard(self) -> None:
        """Remove what was written, best effort (the disk may be the problem)."""
        try:
            self._discard()
        finally:
            self._lock.release()

    @abstractmethod
    def _complete(self, meta: FlowMeta) -> None: ...

    @abstractmethod
    def _discard(self) -> None: ...


def write_file(path: Path, data: bytes) -> int:
    """Write one output file; returns its size. Every byte of a folder goes through here
    (tests replace it to simulate a full disk)."""
    path.write_bytes(data)
    return len(data)


class FolderOutput(VideoOutput):
    """The files of ``folder``, written into this writer's ``<folder>.tmp-<host>-<pid>/``."""

    def __init__(self, folder: Path, layout: FrameLayout, replace: bool):
        super().__init__(folder, folder, replace)
        self.layout = layout
        self.folder = temporary(folder)
        try:
            shutil.rmtree(self.folder, ignore_errors=True)  # ours, left by an attempt that could not clean up
            self.folder.mkdir(parents=True)
        except BaseException:
            self._lock.release()
            raise

    def is_complete(self) -> bool:
        return (self.final / META_FILE).is_file()

    def write(self, name: str, data: bytes) -> int:
        return write_file(self.folder / name, data)

    def _complete(self, meta: FlowMeta) -> None:
        write_meta(self.folder, meta)
        final = self.final
        if final.exists():
            # No meta.json (checked under the lock): an older version's killed run, or another
            # tool's folder. Our files go; anything else stays, and ours are moved in beside it.
            clear_folder(final, self.layout)
            try:
                final.rmdir()
            except OSError:
                for path in sorted(self.folder.iterdir(), key=lambda path: path.name == META_FILE):
                    os.replace(path, final / path.name)  # meta.json last
                self.folder.rmdir()
                _fsync_dir(final)
                return
        os.rename(self.folder, final)
        _fsync_dir(final.parent)  # the rename itself durable: a crash cannot undo a "complete"

    def _discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class PackOutput(VideoOutput):
    """The members of ``<folder>.zip``, streamed into ``<folder>.zip.tmp-<host>-<pid>`` and
    renamed by ``finish``: no file per field reaches the disk."""

    def __init__(self, folder: Path, replace: bool):
        pack = pack_path(folder.parent, folder.name)
        super().__init__(pack, folder, replace)
        try:
            self._writer = PackWriter(pack, durable=True)
        except BaseException:
            self._lock.release()
            raise

    def is_complete(self) -> bool:
        return self.final.is_file()

    def write(self, name: str, data: bytes) -> int:
        return self._writer.add(name, data)

    def _complete(self, meta: FlowMeta) -> None:
        # The bytes write_meta puts in a folder, so a pack equals its folder packed, member by member.
        self._writer.commit(json_text(asdict(meta), indent=2).encode("utf-8"))

    def _discard(self) -> None:
        self._writer.abort()


def open_output(folder: Path, config: ExtractionConfig, replace: bool = False) -> VideoOutput:
    """The output of the video whose folder is ``folder`` in ``config.store`` ("folders", or
    "packed": the pack ``<folder>.zip``); raises VideoBusy when another writer holds it or,
    unless ``replace``, has completed it."""
    if config.store == "packed":
        return PackOutput(folder, replace)
    return FolderOutput(folder, config.layout, replace)


def finish_video(
    output: VideoOutput, config: ExtractionConfig, params: dict, frames: VideoFrames, num_frames: int,
    source: str, bytes_written: int, seconds: float, flow_seconds: float,
) -> VideoResult:
    """Write meta.json into a video's output whose files are all written (which makes it complete)."""
    width, height = frames.size
    layout = config.layout
    output.finish(FlowMeta(
        algorithm=config.algorithm, params=params, bound=config.bound,
        jpeg_quality=config.quality, width=width, height=height, num_frames=num_frames,
        num_flows=num_frames - 1, fps=frames.fps, source=source,
        start_index=layout.start_index, step=config.step, backward=config.backward,
        rgb=config.rgb, layout=layout.templates(), decoder=config.decoder,
    ))  # fmt: skip
    return VideoResult(
        pairs=num_frames - 1, num_frames=num_frames, bytes_written=bytes_written,
        seconds=seconds, flow_seconds=flow_seconds, width=width, height=height,
    )  # fmt: skip


def write_jpeg(output: VideoOutput, path: Path, image: np.ndarray, quality: int) -> int:
    """Encode ``image`` and store it as the file named like ``path`` in ``output``; returns its size."""
    return output.write(path.name, encode_jpeg(image, quality))


def clear_folder(folder: Path, layout: FrameLayout) -> None:
    """Remove what an earlier (possibly killed) run wrote: meta.json first, then the files
    ``layout`` names (``FrameLayout.owns``), nothing else."""
    (folder / META_FILE).unlink(missing_ok=True)
    for path in folder.iterdir():
        if layout.owns(path.name) and path.is_file():
            path.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

