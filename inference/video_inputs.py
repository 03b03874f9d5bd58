"""The videos a command was given: files, folders, globs and list files, in one list.

- a folder: every video under it (``flow.videos.list_videos``: the extensions extraction reads);
- a glob (``clips/*.mp4``, ``data/**/*.avi``, quoted so the shell leaves it): the matching videos;
- a list file (``.txt``, ``.list``, ``.lst``): one video per line, extra columns ignored
  (annotation lines and a failures list read as lists), relative paths from the current folder;
- any other file: a video, whatever its extension (the decoder says whether it is one).

An argument naming nothing is a problem of that argument (one line, the run goes on); each
video is listed once, in the order given.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from flow.videos import VIDEO_EXTENSIONS, list_videos

LIST_SUFFIXES = (".txt", ".list", ".lst")
_GLOB_CHARACTERS = set("*?[")


@dataclass
class VideoInputs:
    """The videos found, and the arguments that named none (``(argument, reason)``)."""

    videos: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def is_video_name(path: Path) -> bool:
    return path.suffix.lower().lstrip(".") in VIDEO_EXTENSIONS


def find_videos(arguments: list[str]) -> VideoInputs:
    """The videos named by ``arguments`` (see the module's docstring).

    Args:
        arguments: paths, folders, globs and list files, as the user typed them.
    """
    found = VideoInputs()
    seen: set[Path] = set()

    def add(video: Path) -> None:
        key = video.resolve()
        if key not in seen:
            seen.add(key)
            found.videos.append(video)

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            videos = [path / relative for relative in list_videos(path)]
            if not videos:
                found.problems.append((argument, f"no videos in this folder ({', '.join(VIDEO_EXTENSIONS)})"))
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            try:
                videos = [Path(entry) for entry in list_videos(".", path)]
            except ValueError as error:
                found.problems.append((argument, str(error)))
                continue
            if not videos:
                found.problems.append((argument, "the list names no video"))
        elif path.is_file():
            videos = [path]
        elif _GLOB_CHARACTERS & set(argument):
            videos = [Path(match) for match in sorted(glob.glob(argument, recursive=True))
                      if Path(match).is_file() and is_video_name(Path(match))]
            if not videos:
                found.problems.append((argument, "matches no video file"))
        else:
            found.problems.append((argument, "no such file or folder"))
            continue
        for video in videos:
            add(video)
    return found
