"""What every annotation reader returns, and the parse error and line reader they share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flow.videos import video_id

# The extension of the videos ``python -m datamodules resize`` writes (datamodules/resize.py).
RESIZED_SUFFIX = ".mp4"


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and, where known, the line."""

    def __init__(self, path: Path | str, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class VideoRecord:
    """One listed video.

    Args:
        video_id: the video's path relative to the video root without extension; also its
            folder name under the frames root.
        path: the video file relative to the video root, as listed; None for rawframe lists.
        label: 0-based class index; -1 when the list has no label (Kinetics test).
        num_frames: the frame count a rawframe list states; None elsewhere.
        alternatives: further relative paths the file may have (Kinetics downloaders
            disagree on folders); the index takes the first that exists, ``path`` first.
    """

    video_id: str
    path: str | None
    label: int
    num_frames: int | None = None
    alternatives: tuple[str, ...] = ()

    def candidates(self) -> tuple[str, ...]:
        """The relative paths to look for, in order: as listed, the alternatives, then each as
        ``python -m datamodules resize`` names it (``Class/v_X.avi`` -> ``Class/v_X.mp4``), so a
        resized root is read with the dataset's own annotation files."""
        listed = (self.path, *self.alternatives) if self.path is not None else ()
        resized = (video_id(name) + RESIZED_SUFFIX for name in listed)
        return tuple(dict.fromkeys((*listed, *resized)))


@dataclass
class Annotations:
    """Class names in label order and the listed videos."""

    classes: list[str]
    records: list[VideoRecord] = field(default_factory=list)


# ``Class/v_X.avi`` -> ``Class/v_X``: the one video-id rule, shared with flow extraction.
strip_extension = video_id


def read_lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) of the non-blank lines, stripped of CR/LF and spaces.

    UCF-101's lists end lines in CRLF and HMDB-51's in a trailing space; both are noise.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise AnnotationError(path, f"not UTF-8 text ({error})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield number, line


def parse_int(text: str, path: Path | str, line: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(path, f"{what} {text!r} is not an integer", line) from None
