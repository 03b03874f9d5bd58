"""The videos of a dataset: listing a video root, and the rule that names each video.

A video's id is its path relative to the video root without the extension
(``ApplyEyeMakeup/v_X.avi`` -> ``ApplyEyeMakeup/v_X``). Extraction names a video's flow
folder by it and the annotation readers name their records by it, so both use this one
rule and meet at the same folder. Joining an id or a listed path onto a root goes
through ``flow.paths.safe_join``, which refuses names that leave the root.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

__all__ = ["VIDEO_EXTENSIONS", "id_clashes", "list_videos", "video_id"]

VIDEO_EXTENSIONS = ("avi", "mp4", "mkv", "webm", "mov", "m4v", "mpg", "mpeg", "flv", "wmv")


def video_id(relative: str) -> str:
    """``ApplyEyeMakeup/v_X.avi`` -> ``ApplyEyeMakeup/v_X``: the folder name under the frames root.

    Only the last suffix goes (``a.b/c.mp4`` keeps ``a.b``); the path is read as POSIX,
    as annotation files write it, on every system.
    """
    path = PurePosixPath(relative)
    return (path.with_suffix("") if path.suffix else path).as_posix()


def _list_entry(line: str, extensions: Sequence[str]) -> str:
    """The video path on one list line.

    Annotation lines carry more columns (``v_X.avi 1``; HMDB adds a trailing space).
    A line ending in a video extension is kept whole, so names with spaces survive;
    a tab always ends the path, which lets a failures file be fed back as a list.
    """
    entry = line.split("\t", 1)[0].strip()
    if entry.lower().endswith(tuple("." + ext for ext in extensions)):
        return entry
    return entry.split()[0] if entry else ""


def list_videos(
    video_root: Path | str, list_file: Path | str | None = None, extensions: Sequence[str] = VIDEO_EXTENSIONS
) -> list[str]:
    """Video paths relative to ``video_root`` (POSIX, sorted, unique).

    From ``list_file`` when given (one path per line, extra columns ignored), otherwise
    every file under the root whose extension is in ``extensions`` (case-insensitive).
    """
    extensions = tuple(ext.lower().lstrip(".") for ext in extensions)
    if list_file is not None:
        try:
            lines = Path(list_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read video list {list_file}: {error}") from None
        entries = {_list_entry(line, extensions) for line in lines}
        entries.discard("")
        return sorted(entries)
    root = Path(video_root)
    if not root.is_dir():
        raise ValueError(f"video root {root} is not a directory")
    suffixes = {"." + ext for ext in extensions}
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.suffix.lower() in suffixes and path.is_file()
    )


def id_clashes(video_root: Path | str, videos: Sequence[str]) -> dict[str, list[str]]:
    """For each of ``videos`` (listed paths) whose id another video shares, those others:
    listed ones, and video files beside it on disk (``a/x.avi`` and ``a/x.mp4``), so a clash
    is seen also by a run given only one of the two (a rerun from the failures list)."""
    by_id: dict[str, set[str]] = defaultdict(set)
    for listed in videos:
        by_id[video_id(listed)].add(listed)
    suffixes = {"." + ext for ext in VIDEO_EXTENSIONS} | {PurePosixPath(v).suffix.lower() for v in videos}
    for folder in {PurePosixPath(listed).parent for listed in videos}:
        try:
            names = os.listdir(Path(video_root) / folder)
        except OSError:
            continue  # no such folder: the listed videos there fail on their own
        for name in names:
            if PurePosixPath(name).suffix.lower() in suffixes:
                relative = (folder / name).as_posix()
                if video_id(relative) in by_id:
                    by_id[video_id(relative)].add(relative)
    return {listed: sorted(by_id[video_id(listed)] - {listed}) for listed in videos if len(by_id[video_id(listed)]) > 1}
