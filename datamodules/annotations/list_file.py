"""mmaction2-style list files: "<video> <label>" or "<frame_dir> <num_frames> <label>".

Labels are already 0-based. The name may hold spaces (Kinetics labels do), so the numbers
are split off from the right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from datamodules.annotations.records import (
    AnnotationError,
    Annotations,
    VideoRecord,
    parse_int,
    read_lines,
    strip_extension,
)


def read_list_file(
    path: Path | str, kind: Literal["video", "rawframes"] = "video", classes: list[str] | None = None
) -> Annotations:
    """Read a list file; without ``classes`` the class names are the label numbers."""
    if kind not in ("video", "rawframes"):
        raise ValueError(f"kind must be 'video' or 'rawframes', got {kind!r}")
    numbers = 1 if kind == "video" else 2
    shape = "'<video> <label>'" if kind == "video" else "'<frame_dir> <num_frames> <label>'"
    records = []
    for line, text in read_lines(path):
        parts = text.rsplit(None, numbers)
        if len(parts) != numbers + 1:
            raise AnnotationError(path, f"expected {shape}, got {text!r}", line)
        label = parse_int(parts[-1], path, line, "label")
        if label < 0 or (classes is not None and label >= len(classes)):
            raise AnnotationError(path, f"label {label} outside 0..{len(classes) - 1 if classes else 'N'}", line)
        if kind == "video":
            records.append(VideoRecord(strip_extension(parts[0]), parts[0], label))
        else:
            num_frames = parse_int(parts[1], path, line, "frame count")
            records.append(VideoRecord(parts[0].rstrip("/"), None, label, num_frames))
    if classes is None:
        classes = [str(label) for label in range(max((r.label for r in records), default=-1) + 1)]
    return Annotations(list(classes), records)
