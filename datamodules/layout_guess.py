"""Which file-name layout a flow folder without meta.json actually follows.

A reader told the wrong layout is silent or terse: a 1-based reader on denseflow's
0-based folder skips field 0 and reads every field one place late; a 0-based reader on a
1-based folder, or ``flow_x_*`` templates on mmaction2's ``x_*`` files, finds nothing.
``layout_mismatch`` compares what the configured ``FrameLayout`` reads with the layout the
folder's names follow (templates and start index inferred from the names, any padding
or prefix) and says so, naming the ``--flow-layout`` that reads it where one does.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from flow.layout import NAMED_LAYOUTS, FrameLayout

# <prefix><number><extension>; the axis letter ends the prefix: flow_x_, x_, flow_x, x.
_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<digits>\d+)(?P<ext>\.[A-Za-z]+)$")


def stored_fields(names: set[str], layout: FrameLayout) -> int:
    """Fields 0, 1, ... whose x and y files both exist, as ``layout`` names them."""
    count = 0
    while all(path.name in names for path in layout.flow_paths("", count)):
        count += 1
    return count


@dataclass(frozen=True)
class LayoutGuess:
    """The forward-flow layout a folder's names follow and the fields it reads."""

    layout: FrameLayout
    fields: int

    @property
    def name(self) -> str | None:
        """The ``--flow-layout`` that reads these files, if one does."""
        return next((name for name, named in NAMED_LAYOUTS.items()
                     if (named.flow_x, named.flow_y, named.start_index)
                     == (self.layout.flow_x, self.layout.flow_y, self.layout.start_index)), None)

    def describe(self) -> str:
        first = self.layout.flow_x.format(self.layout.start_index)
        last = self.layout.flow_x.format(self.layout.start_index + self.fields - 1)
        how = f"--flow-layout {self.name}" if self.name else (
            f"a layout with flow_x={self.layout.flow_x!r}, flow_y={self.layout.flow_y!r}, "
            f"start_index={self.layout.start_index}")
        return f"the folder holds {self.fields} fields {first}..{last} ({how} reads them)"


def _template(prefix: str, widths: Counter, ext: str) -> str:
    width = widths.most_common(1)[0][0]
    return f"{prefix}{{:0{width}d}}{ext}"


def guess_layout(names: Iterable[str]) -> LayoutGuess | None:
    """The x/y template pair and start index under which the names hold the most
    consecutive fields; None when no pair of numbered x and y files is there."""
    names = set(names)
    numbers: dict[tuple[str, str], set[int]] = defaultdict(set)
    widths: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for name in names:
        match = _NUMBERED.match(name)
        if match is None:
            continue
        key = (match["prefix"], match["ext"])
        numbers[key].add(int(match["digits"]))
        widths[key][len(match["digits"])] += 1
    best = None
    for (prefix, ext), found in numbers.items():
        # Forward x planes only: the axis letter ends the prefix, and "bx" is backward flow.
        stem = prefix.rstrip("_-")
        if not stem.endswith("x") or stem.endswith("bx"):
            continue
        y_prefix = stem[:-1] + "y" + prefix[len(stem):]
        if (y_prefix, ext) not in numbers:
            continue
        try:
            layout = FrameLayout(flow_x=_template(prefix, widths[(prefix, ext)], ext),
                                 flow_y=_template(y_prefix, widths[(y_prefix, ext)], ext),
                                 start_index=min(found))
        except ValueError:  # templates that collide with our backward/RGB defaults
            continue
        guess = LayoutGuess(layout, stored_fields(names, layout))
        # Most fields wins; a named layout breaks a tie.
        if guess.fields and (best is None or (guess.fields, guess.name is not None)
                             > (best.fields, best.name is not None)):
            best = guess
    return best


@dataclass(frozen=True)
class LayoutMismatch:
    """A folder whose names follow ``guess`` while the reader's ``configured`` layout reads ``reads`` fields."""

    guess: LayoutGuess
    configured: FrameLayout
    reads: int

    def describe(self) -> str:
        late = self.reads and self.guess.layout.flow_x == self.configured.flow_x
        return (f"{self.guess.describe()}; the reader's layout ({self.configured.flow_x} from "
                f"{self.configured.start_index}) reads {self.reads}" + (", each one field late" if late else ""))


def layout_mismatch(names: Iterable[str], configured: FrameLayout) -> LayoutMismatch | None:
    """The layout the folder's names follow when it is not ``configured`` (other templates
    or another start index) and reads more fields; else None."""
    names = set(names)
    guess = guess_layout(names)
    if guess is None:
        return None
    same = (guess.layout.flow_x, guess.layout.flow_y, guess.layout.start_index) == (
        configured.flow_x, configured.flow_y, configured.start_index)
    reads = stored_fields(names, configured)
    if same or guess.fields <= reads:
        return None
    return LayoutMismatch(guess, configured, reads)
