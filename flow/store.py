"""The one interface the datamodules read flow and frames through.

``FolderFlowStore`` reads one folder of JPEGs per video (ours, denseflow's, mmaction2's);
``flow.packed.PackedFlowStore`` one uncompressed zip per video, through the same methods
(it overrides only how a video's files are listed and read).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from flow.codec import DEFAULT_BOUND, decode_jpeg
from flow.layout import OURS, FrameLayout
from flow.meta import FlowMeta, read_meta
from flow.paths import safe_join


def decode_image(data: np.ndarray, path: Path, color: bool) -> np.ndarray:
    """A JPEG's bytes decoded; an error names ``path`` (a file, or a pack's member)."""
    try:
        return decode_jpeg(data, color=color)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


CACHED_METAS = 4096  # meta.json files kept per store (per worker process)


class FlowFields(NamedTuple):
    """Quantized flow fields of one video and the bound that dequantizes them
    (``flow.codec.dequantize``; ``datamodules.inputs`` does it on the device)."""

    planes: torch.Tensor  # uint8 (T, 2, H, W), planes [x, y]
    bound: float


class FolderFlowStore:
    """Flow fields and RGB frames stored as JPEG files, one folder per video.

    A video's ``meta.json`` describes its folder and always wins: its templates,
    start index and bound are what the writer used. ``layout`` and ``bound`` apply to
    folders without one (written by denseflow or mmaction2's tools).

    Args:
        root: folder holding one sub-folder per video id.
        layout: file names of folders without meta.json; None means ours.
        bound: quantization bound of folders without meta.json.
    """

    def __init__(self, root: Path | str, layout: FrameLayout | None = None, bound: float = DEFAULT_BOUND):
        self.root = Path(root)
        self.layout = layout or OURS
        self.default_bound = float(bound)
        self._metas: OrderedDict[str, FlowMeta] = OrderedDict()

    def folder(self, video_id: str) -> Path:
        return safe_join(self.root, video_id)

    def meta(self, video_id: str) -> FlowMeta | None:
        # Cached once present (a complete folder no longer changes), for the most recent
        # videos only: a worker of a 300k-video dataset would otherwise keep every meta.json.
        meta = self._metas.get(video_id)
        if meta is not None:
            self._metas.move_to_end(video_id)
            return meta
        meta = self._read_meta(video_id)
        if meta is not None:
            self._metas[video_id] = meta
            if len(self._metas) > CACHED_METAS:
                self._metas.popitem(last=False)
        return meta

    def _read_meta(self, video_id: str) -> FlowMeta | None:
        return read_meta(self.folder(video_id))

    def _names(self, video_id: str) -> set[str]:
        """The file names of a video's folder."""
        folder = self.folder(video_id)
        try:
            return set(os.listdir(folder))
        except FileNotFoundError:
            raise FileNotFoundError(f"no folder for video {video_id!r}: {folder}") from None

    def _read_image(self, video_id: str, path: Path, color: bool) -> np.ndarray:
        # Reading the bytes ourselves (as fast as cv2.imread) tells a missing file from a
        # corrupt one, which cv2.imread reports alike as None plus a log line.
        return decode_image(np.fromfile(path, dtype=np.uint8), path, color)

    def exists(self, video_id: str) -> bool:
        """Whether the video has stored frames at all (complete or not)."""
        return self.folder(video_id).is_dir()

    def stamp_paths(self, video_id: str) -> list[Path]:
        """The paths whose modification times change when the video's stored frames do
        (what the datamodules' index cache checks)."""
        return [self.folder(video_id)]

    def is_complete(self, video_id: str) -> bool:
        return self.meta(video_id) is not None

    def layout_of(self, video_id: str) -> FrameLayout:
        meta = self.meta(video_id)
        return meta.frame_layout() if meta else self.layout

    def bound(self, video_id: str) -> float:
        meta = self.meta(video_id)
        return meta.bound if meta else self.default_bound

    def _count(self, video_id: str, name_of: Callable[[Path, int], Path]) -> int:
        """Files numbered consecutively from the start index (one directory listing)."""
        folder, names = self.folder(video_id), self._names(video_id)
        count = 0
        while name_of(folder, count).name in names:
            count += 1
        return count

    def num_flows(self, video_id: str) -> int:
        meta = self.meta(video_id)
        if meta:
            return meta.num_flows
        return self._count(video_id, lambda folder, k: self.layout.flow_paths(folder, k)[0])

    def num_rgb(self, video_id: str) -> int:
        meta = self.meta(video_id)
        if meta:
            return meta.num_frames if meta.rgb else 0
        return self._count(video_id, self.layout.rgb_path)

    def _check_indices(self, video_id: str, indices: Sequence[int], available: int | None) -> None:
        if len(indices) == 0:
            raise ValueError(f"no indices given for video {video_id!r}")
        for k in indices:
            if k < 0 or (available is not None and k >= available):
                raise IndexError(f"index {k} out of range for video {video_id!r} ({available} available)")

    def read_fields(self, video_id: str, indices: Sequence[int], backward: bool = False) -> FlowFields:
        """Quantized fields ``indices`` (0-based) as uint8 (T, 2, H, W) [x, y], and their bound.

        Each distinct field is decoded once, straight into its rows of one preallocated
        tensor (overlapping test stacks repeat fields): the stack is never copied whole.
        """
        meta = self.meta(video_id)
        if meta and backward and not meta.backward:
            raise ValueError(f"video {video_id!r} has no backward flow (its meta.json says backward=false)")
        self._check_indices(video_id, indices, meta.num_flows if meta else None)
        folder, layout = self.folder(video_id), self.layout_of(video_id)
        rows: dict[int, list[int]] = {}
        for row, k in enumerate(indices):
            rows.setdefault(k, []).append(row)
        planes: np.ndarray | None = None
        for k, where in rows.items():
            x_path, y_path = layout.flow_paths(folder, k, backward)
            x, y = (self._read_image(video_id, path, color=False) for path in (x_path, y_path))
            if x.shape != y.shape:
                raise ValueError(f"{y_path}: size {y.shape} differs from {x_path.name}'s {x.shape}")
            if planes is None:
                planes = np.empty((len(indices), 2, *x.shape), dtype=np.uint8)
            elif planes.shape[2:] != x.shape:
                raise ValueError(f"{folder}: images differ in size {sorted({planes.shape[2:], x.shape})}")
            # Row by row with integer indices: a list index costs torch (and numpy) a gather,
            # 150x the copy itself.
            planes[where[0], 0], planes[where[0], 1] = x, y
            for row in where[1:]:
                planes[row] = planes[where[0]]
        return FlowFields(torch.from_numpy(planes), meta.bound if meta else self.default_bound)

    def read_flow(self, video_id: str, indices: Sequence[int], backward: bool = False) -> np.ndarray:
        """``read_fields``' planes as a numpy array (for tools that dequantize with ``bound``)."""
        return self.read_fields(video_id, indices, backward).planes.numpy()

    def read_rgb(self, video_id: str, indices: Sequence[int]) -> np.ndarray:
        """RGB frames ``indices`` (0-based) as uint8 (T, H, W, 3)."""
        meta = self.meta(video_id)
        if meta and not meta.rgb:
            raise ValueError(f"video {video_id!r} has no RGB frames (its meta.json says rgb=false)")
        self._check_indices(video_id, indices, meta.num_frames if meta else None)
        folder, layout = self.folder(video_id), self.layout_of(video_id)
        frames = {k: self._read_image(video_id, layout.rgb_path(folder, k), color=True)
                  for k in dict.fromkeys(indices)}
        return _stack([frames[k] for k in indices], folder)


def _stack(arrays: list[np.ndarray], folder: Path) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{folder}: images differ in size {sorted(shapes)}")
    return np.stack(arrays)
