"""What ``classify`` shows of a video's scores: the printed top-k table and the JSON line.

Printed, per video: the views taken and notes, then the top-k classes with their
probabilities, one column per stream, the fused one first (``fusion``, the two-stream
module's own weighting); with ``--window``, one line per window with its start and end
time and the top-k of the main stream (fused, else the only one).

``--output FILE.jsonl``: one JSON object per video, in the order classified::

    {"video": "clips/a.mp4", "checkpoint": "last.ckpt", "classes": ["walk", ...],
     "views": "protocol", "protocol": {"positions": 25, "crops": "ten", "views": 250},
     "flow_engine": "tvl1", "notes": [...],
     "scores": {"fusion": [p per class], "spatial": [...], "temporal": [...]}}

with ``--window``, ``"windows": [{"start": s, "end": s, "scores": {...}, "protocol": ..., "notes": ...}]``
in place of ``scores``; a video that failed is ``{"video": ..., "error": "the reason"}``.
Probabilities are the softmax averaged over the views, per class in ``classes``' order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FUSION = "fusion"


def stream_order(scores: Mapping[str, np.ndarray]) -> list[str]:
    """The streams as shown: the fused scores first, then the streams as the module names them."""
    return sorted(scores, key=lambda name: name != FUSION)


def main_stream(scores: Mapping[str, np.ndarray]) -> str:
    """The stream a one-line answer shows: the fused one, else the first."""
    return stream_order(scores)[0]


def top_classes(probabilities: np.ndarray, classes: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable classes, most probable first (ties: the lower index first)."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(classes[i], float(probabilities[i])) for i in order]


def describe_protocol(protocol: Mapping[str, Any], flow_engine: str | None = None) -> str:
    """``positions 25, crops ten, views 250; flow tvl1``: a protocol dict (and the flow engine) in one line."""
    text = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in protocol.items())
    return text + (f"; flow {flow_engine}" if flow_engine else "")


def top_table(scores: Mapping[str, np.ndarray], classes: Sequence[str], k: int) -> list[str]:
    """The printed top-k table: a rank column and one column per stream, ``class  0.912``."""
    streams = stream_order(scores)
    tops = {name: top_classes(scores[name], classes, k) for name in streams}
    labels = {name: max(len(label) for label, _ in top) for name, top in tops.items()}
    columns = {name: [f"{label.ljust(labels[name])}  {p:.3f}" for label, p in top] for name, top in tops.items()}
    widths = {name: max(len(name), *(len(cell) for cell in cells)) for name, cells in columns.items()}
    rows = [["rank", *(name.ljust(widths[name]) for name in streams)]]
    for rank in range(len(columns[streams[0]])):
        rows.append([str(rank + 1).ljust(4), *(columns[name][rank].ljust(widths[name]) for name in streams)])
    return ["  " + "   ".join(row).rstrip() for row in rows]


def window_line(start_s: float, end_s: float, scores: Mapping[str, np.ndarray], classes: Sequence[str],
                k: int) -> str:
    """One window: ``  12.0-16.0 s  walk 0.912, run 0.051``, the main stream's top-k."""
    top = top_classes(scores[main_stream(scores)], classes, k)
    return f"  {start_s:7.2f}-{end_s:.2f} s  " + ", ".join(f"{label} {p:.3f}" for label, p in top)


def caption_lines(scores: Mapping[str, np.ndarray], classes: Sequence[str], k: int) -> tuple[str, ...]:
    """What ``--render`` draws: the main stream's top-k, ``walk 0.91``."""
    return tuple(f"{label} {p:.2f}" for label, p in top_classes(scores[main_stream(scores)], classes, k))


def plain_scores(scores: Mapping[str, np.ndarray]) -> dict[str, list[float]]:
    """Per stream (fused first) the probability of every class, as JSON numbers."""
    return {name: [float(p) for p in np.asarray(scores[name]).ravel()] for name in stream_order(scores)}
