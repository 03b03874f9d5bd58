"""File names of the frames and flow fields inside one video's folder.

Tools disagree on both the names and where numbering starts (denseflow today writes
``flow_x_00000.jpg`` 0-based, dense_flow and mmaction2's rawframes are 1-based,
mmaction2's flow test data is ``x_00001.jpg``), so both are settings. Templates are
Python format strings (``flow_x_{:05d}.jpg``); printf templates as denseflow documents
them (``flow_x_%05d.jpg``) are accepted and converted.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, fields
from pathlib import Path

_PRINTF_INT = re.compile(r"%(0?\d*)d")


def to_format_template(template: str) -> str:
    """``flow_x_%05d.jpg`` -> ``flow_x_{:05d}.jpg``; format-style templates pass unchanged."""
    if "%" not in template:
        return template
    escaped = template.replace("{", "{{").replace("}", "}}")
    converted, count = _PRINTF_INT.subn(lambda m: "{:" + m.group(1) + "d}", escaped)
    if count != 1:
        raise ValueError(f"template {template!r} must hold exactly one %d-style field")
    return converted


def _template_pattern(template: str) -> str:
    """``flow_x_{:05d}.jpg`` -> a regex matching any number in the field."""
    return "".join(re.escape(literal) + (r"\d+" if name is not None else "")
                   for literal, name, _, _ in string.Formatter().parse(template))


@dataclass(frozen=True)
class FrameLayout:
    """Templates for the files of one video; field k (0-based) is file number k + start_index."""

    flow_x: str = "flow_x_{:05d}.jpg"
    flow_y: str = "flow_y_{:05d}.jpg"
    backward_x: str = "flow_bx_{:05d}.jpg"
    backward_y: str = "flow_by_{:05d}.jpg"
    rgb: str = "img_{:05d}.jpg"
    start_index: int = 1

    def __post_init__(self) -> None:
        for name in TEMPLATE_NAMES:
            template = to_format_template(getattr(self, name))
            try:
                distinct = template.format(0) != template.format(1)
            except (IndexError, KeyError, ValueError) as error:
                raise ValueError(f"bad {name} template {template!r}: {error}") from None
            if not distinct:
                raise ValueError(f"{name} template {template!r} has no number field")
            if Path(template.format(0)).name != template.format(0) or template.startswith(".."):
                # Templates may come from a downloaded meta.json: keep reads inside the folder.
                raise ValueError(f"{name} template {template!r} must be a plain file name")
            object.__setattr__(self, name, template)
        if self.start_index < 0:
            raise ValueError(f"start_index must be >= 0, got {self.start_index}")
        if len({getattr(self, name) for name in TEMPLATE_NAMES}) != len(TEMPLATE_NAMES):
            raise ValueError(f"templates must differ from each other: {self.templates()}")

    @classmethod
    def from_printf(cls, **kwargs: str | int) -> FrameLayout:
        """Build from denseflow-style ``%05d`` templates (the constructor accepts them too)."""
        return cls(**kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_templates(cls, templates: dict, start_index: int) -> FrameLayout:
        """Build from a meta.json ``layout`` dict; missing templates take our defaults."""
        known = {name: templates[name] for name in TEMPLATE_NAMES if name in templates}
        return cls(**known, start_index=start_index)

    def templates(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in TEMPLATE_NAMES}

    def owns(self, name: str) -> bool:
        """Whether ``name`` is a file name one of the templates produces, for any number.

        What clearing a half-written folder may remove: a folder that also holds other
        things (a video's id may equal a directory of the dataset) loses nothing else.
        """
        pattern = "|".join(_template_pattern(template) for template in self.templates().values())
        return re.fullmatch(pattern, name) is not None  # re caches the compiled pattern

    def _number(self, k: int) -> int:
        if k < 0:
            raise IndexError(f"frame/field index must be >= 0, got {k}")
        return k + self.start_index

    def flow_paths(self, folder: Path, k: int, backward: bool = False) -> tuple[Path, Path]:
        """Paths of the x and y planes of field k (0-based)."""
        x, y = (self.backward_x, self.backward_y) if backward else (self.flow_x, self.flow_y)
        number = self._number(k)
        return Path(folder) / x.format(number), Path(folder) / y.format(number)

    def rgb_path(self, folder: Path, k: int) -> Path:
        """Path of RGB frame k (0-based)."""
        return Path(folder) / self.rgb.format(self._number(k))


# Every str field is a file-name template; derived so that a new template needs one line.
TEMPLATE_NAMES = tuple(f.name for f in fields(FrameLayout) if f.type == "str")

DENSEFLOW = FrameLayout(start_index=0)
MMACTION2 = FrameLayout(flow_x="x_{:05d}.jpg", flow_y="y_{:05d}.jpg", start_index=1)
OURS = FrameLayout()

# Names for settings and command lines (``--flow-layout denseflow``).
NAMED_LAYOUTS = {"ours": OURS, "denseflow": DENSEFLOW, "mmaction2": MMACTION2}
