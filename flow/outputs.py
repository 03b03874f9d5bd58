"""Where one video's extracted files go: its folder of JPEGs, or its pack (``flow/packed.py``).

Both extraction paths (per video and batched) write through a ``VideoOutput``, so each
store is written, completed and cleaned up one way. A video is complete only once
``finish`` has run: the folder's meta.json written last, or the pack's ``.zip.tmp``
renamed to ``.zip``; until then a reader sees nothing it trusts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from flow.layout import FrameLayout
from flow.meta import META_FILE, FlowMeta, json_text, write_meta
from flow.packed import PackWriter, pack_path, tmp_path


class VideoOutput(ABC):
    """The files of one video being written; ``write`` may be called from several threads."""

    @abstractmethod
    def write(self, name: str, data: bytes) -> int:
        """Store ``data`` as the file ``name`` of the video's layout; returns its size."""

    @abstractmethod
    def finish(self, meta: FlowMeta) -> None:
        """Write meta.json and make the video complete; every ``write`` must have returned."""

    @abstractmethod
    def discard(self) -> None:
        """Remove what was written, best effort (the disk may be the problem)."""


class FolderOutput(VideoOutput):
    """``folder``'s files; earlier files of ``layout`` (a killed run's) are cleared first.

    ``write_file(path, data)`` writes one file (``flow.extract.write_file``, which tests
    replace to simulate a full disk).
    """

    def __init__(self, folder: Path, layout: FrameLayout, write_file: Callable[[Path, bytes], int]):
        self.folder, self.layout, self._write_file = folder, layout, write_file
        folder.mkdir(parents=True, exist_ok=True)
        clear_folder(folder, layout)

    def write(self, name: str, data: bytes) -> int:
        return self._write_file(self.folder / name, data)

    def finish(self, meta: FlowMeta) -> None:
        write_meta(self.folder, meta)

    def discard(self) -> None:
        discard_partial(self.folder, self.layout)


class PackOutput(VideoOutput):
    """The members of ``<folder>.zip``, streamed into ``<folder>.zip.tmp`` (a killed run's
    ``.tmp`` is overwritten) and renamed by ``finish``: no file per field reaches the disk."""

    def __init__(self, folder: Path):
        self._writer = PackWriter(pack_path(folder.parent, folder.name), durable=True)

    def write(self, name: str, data: bytes) -> int:
        return self._writer.add(name, data)

    def finish(self, meta: FlowMeta) -> None:
        # The bytes write_meta puts in a folder, so a pack equals its folder packed, member by member.
        self._writer.commit(json_text(asdict(meta), indent=2).encode("utf-8"))

    def discard(self) -> None:
        self._writer.abort()


def open_output(folder: Path, store: str, layout: FrameLayout,
                write_file: Callable[[Path, bytes], int]) -> VideoOutput:
    """The output of the video whose folder is ``folder`` in ``store`` ("folders" or "packed")."""
    if store == "packed":
        return PackOutput(folder)
    return FolderOutput(folder, layout, write_file)


def discard_leftovers(folder: Path, store: str, layout: FrameLayout) -> None:
    """Free what a failed (or earlier, killed) attempt left of the video, with no output open."""
    if store == "packed":
        try:
            tmp_path(pack_path(folder.parent, folder.name)).unlink(missing_ok=True)
        except OSError:
            pass
    else:
        discard_partial(folder, layout)


def clear_folder(folder: Path, layout: FrameLayout) -> None:
    """Remove what an earlier (possibly killed) run wrote: meta.json first, then the files
    ``layout`` names (``FrameLayout.owns``), nothing else."""
    (folder / META_FILE).unlink(missing_ok=True)
    for path in folder.iterdir():
        if layout.owns(path.name) and path.is_file():
            path.unlink()


def discard_partial(folder: Path, layout: FrameLayout) -> None:
    """Free the space of a failed video's partial files; best effort (the disk may be the problem)."""
    try:
        if folder.is_dir():
            clear_folder(folder, layout)
            if not any(folder.iterdir()):
                folder.rmdir()
    except OSError:
        pass
