"""``meta.json``: what a video's flow folder holds, written last so that it means "complete"."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from functools import cache
from typing import get_type_hints

from flow.layout import OURS, FrameLayout

META_FILE = "meta.json"


@dataclass
class FlowMeta:
    """Everything a reader needs to interpret a folder, so it never guesses.

    ``num_frames`` counts the frames decoded from the video after sub-sampling by ``step``
    (frames 0, step, 2*step, ...); forward field k goes from sampled frame k to k + 1,
    backward field k from sampled frame k + 1 to k.
    """

    algorithm: str
    params: dict
    bound: float
    jpeg_quality: int
    width: int
    height: int
    num_frames: int
    num_flows: int
    fps: float
    source: str
    start_index: int = 1
    step: int = 1
    backward: bool = False
    rgb: bool = False
    layout: dict = field(default_factory=OURS.templates)
    decoder: str = ""  # the decoder that read the video ("pyav", "decord"); "" when not recorded
    version: int = 1

    def frame_layout(self) -> FrameLayout:
        return FrameLayout.from_templates(self.layout, self.start_index)


def _type_ok(value: object, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def json_text(data: object, indent: int | None = None) -> str:
    """The text ``write_json_atomic`` writes (also a pack's meta.json member, byte for byte)."""
    return json.dumps(data, indent=indent) + "\n"


def write_json_atomic(path: Path | str, data: object, indent: int | None = None) -> None:
    """Write ``data`` as JSON to ``path`` atomically and durably: a reader (another process,
    another rank) sees the old state or the whole file, also after a crash.

    The file is readable by everyone (0644), as a plain write would leave it under the
    usual umask: a shared dataset's files are read by other users.
    """
    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(json_text(data, indent))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)  # mkstemp creates 0600
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable, so a crash cannot leave a folder that looked complete.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_meta(folder: Path, meta: FlowMeta) -> None:
    """Write ``folder/meta.json`` atomically: a reader sees the old state or the whole file."""
    write_json_atomic(Path(folder) / META_FILE, asdict(meta), indent=2)


def read_meta(folder: Path) -> FlowMeta | None:
    """Read ``folder/meta.json``; None when absent. Unknown keys are ignored (newer writers)."""
    path = Path(folder) / META_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return parse_meta(text, path)


@cache
def _meta_fields() -> tuple[dict[str, type], list[str]]:
    """FlowMeta's field types and required fields: resolving the string annotations compiles
    them, 0.3 ms a call, which a worker would pay for every video it opens."""
    required = [f.name for f in fields(FlowMeta) if f.default is MISSING and f.default_factory is MISSING]
    return get_type_hints(FlowMeta), required


def parse_meta(text: str, path: Path | str) -> FlowMeta:
    """A ``meta.json``'s text as FlowMeta; errors name ``path`` (a file, or a pack's member)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    hints, required = _meta_fields()
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    known = {name: value for name, value in data.items() if name in hints}
    wrong = [f"{name} ({type(value).__name__}, expected {hints[name].__name__})"
             for name, value in known.items() if not _type_ok(value, hints[name])]
    if wrong:
        raise ValueError(f"{path}: wrong types for {', '.join(wrong)}")
    meta = FlowMeta(**known)
    try:
        meta.frame_layout()
    except ValueError as error:
        raise ValueError(f"{path}: bad layout ({error})") from None
    return meta
