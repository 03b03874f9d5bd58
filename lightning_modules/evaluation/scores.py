"""Per-video scores collected during test, exact under DDP, saved for later fusion.

Every rank scores its own videos (the test sampler gives each video to exactly one
rank, with no padding), then the ranks exchange their results once at the end.
Duplicates would mean a sampler pads, so they raise instead of being averaged away.

File format (``.npz``, one per test run): ``video_ids`` (str, N), ``labels`` (int64, N),
``index`` (int64, N: position in the test dataset), and one ``scores_<stream>``
(float32, N x C: softmax averaged over views) per stream, sorted by ``index``.
"""

import os
from pathlib import Path

import numpy as np
import torch.distributed as dist
from torch import Tensor


class VideoScoreCollector:
    """Accumulates (index, label, scores per stream) and gathers them across ranks."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._index: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._scores: dict[str, list[np.ndarray]] = {}

    def add(self, index: Tensor, labels: Tensor, scores: dict[str, Tensor]) -> None:
        self._index.append(index.detach().cpu().numpy().astype(np.int64))
        self._labels.append(labels.detach().cpu().numpy().astype(np.int64))
        for stream, value in scores.items():
            self._scores.setdefault(stream, []).append(value.detach().float().cpu().numpy())

    def _local(self) -> dict[str, np.ndarray]:
        local = {
            "index": np.concatenate(self._index) if self._index else np.zeros(0, np.int64),
            "labels": np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64),
        }
        for stream, parts in self._scores.items():
            local[f"scores_{stream}"] = np.concatenate(parts)
        return local

    def gather(self) -> dict[str, np.ndarray]:
        """All ranks' results, merged and sorted by dataset index (every rank gets them)."""
        parts = [self._local()]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, self._local())
        parts = [p for p in parts if p["index"].size]
        if not parts:
            return {"index": np.zeros(0, np.int64), "labels": np.zeros(0, np.int64)}
        merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        unique, counts = np.unique(merged["index"], return_counts=True)
        if (counts > 1).any():
            raise RuntimeError(
                f"videos {unique[counts > 1][:10].tolist()} were scored more than once: "
                "the test sampler padded or duplicated samples"
            )
        order = np.argsort(merged["index"], kind="stable")
        return {key: value[order] for key, value in merged.items()}


def save_video_scores(path: Path | str, results: dict[str, np.ndarray], video_ids: list[str]) -> Path:
    """Write gathered results with their video ids (see the module docstring), under a
    temporary name renamed when complete: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = np.asarray([video_ids[i] for i in results["index"]], dtype=str)
    partial = path.with_name(f"{path.name}.tmp")
    with open(partial, "wb") as file:
        np.savez(file, video_ids=ids, **results)
    os.replace(partial, path)
    return path


def load_video_scores(path: Path | str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
