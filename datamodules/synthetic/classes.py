"""The synthetic classes: what separates them, and how each layout names them.

Two kinds of class, so that a run can tell what each stream learned:

- ``motion`` classes share one appearance distribution (objects of any colour and
  shape) and differ only in how the objects move; a single frame cannot tell them
  apart, only the temporal stream can.
- ``appearance`` classes differ only in the objects' colour and shape; each video
  moves in a motion drawn at random from the whole motion catalogue, so flow
  alone cannot tell them apart.
"""

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# A motion is a direction of the foreground layer's affine motion: translation
# (dx, dy) in image axes (y points down), rotation sign (+1 = clockwise on
# screen), scale sign (+1 = expanding). Ordered so that the first classes are
# the most distinct ones that survive a horizontal flip: the papers' training
# augmentation mirrors frames (negating flow x), which turns a "move left" video
# into a "move right" one, so mirror-paired classes come last.
MOTIONS: dict[tuple[str, ...], tuple[float, float, int, int]] = {
    ("move", "up"): (0.0, -1.0, 0, 0),
    ("move", "down"): (0.0, 1.0, 0, 0),
    ("zoom", "in"): (0.0, 0.0, 0, 1),
    ("zoom", "out"): (0.0, 0.0, 0, -1),
    ("move", "right"): (1.0, 0.0, 0, 0),
    ("move", "left"): (-1.0, 0.0, 0, 0),
    ("rotate", "clockwise"): (0.0, 0.0, 1, 0),
    ("rotate", "counterclockwise"): (0.0, 0.0, -1, 0),
    ("move", "up", "right"): (0.7071, -0.7071, 0, 0),
    ("move", "down", "left"): (-0.7071, 0.7071, 0, 0),
    ("move", "up", "left"): (-0.7071, -0.7071, 0, 0),
    ("move", "down", "right"): (0.7071, 0.7071, 0, 0),
}

SHAPES = ("circle", "square", "triangle")

# (colour name, hue in degrees); ordered so that neighbours in the list are far
# apart on the hue circle. Shapes cycle along the list.
COLOURS: tuple[tuple[str, float], ...] = (
    ("red", 0.0), ("green", 120.0), ("blue", 240.0), ("yellow", 60.0),
    ("cyan", 180.0), ("magenta", 300.0), ("orange", 30.0), ("mint", 150.0),
    ("violet", 270.0), ("lime", 90.0), ("azure", 210.0), ("rose", 330.0),
)

MAX_CLASSES = 2 * min(len(MOTIONS), len(COLOURS))


@dataclass(frozen=True)
class ClassSpec:
    """One synthetic class: its name in the layout's style and what defines it.

    ``motion`` is set for motion classes; ``hue`` (degrees) and ``shape`` for
    appearance classes.
    """

    name: str
    kind: str
    words: tuple[str, ...]
    motion: tuple[float, float, int, int] | None = None
    hue: float | None = None
    shape: str | None = None

    def rng(self, seed: int, *keys: int) -> np.random.Generator:
        """A generator for this class, independent of the layout and of the other classes."""
        return np.random.default_rng([seed, zlib.crc32(" ".join(self.words).encode()), *keys])


def make_classes(num_classes: int, class_name: Callable[[tuple[str, ...]], str]) -> list[ClassSpec]:
    """The first ``ceil(n/2)`` motions and ``floor(n/2)`` appearances, sorted by name.

    ``class_name`` names a class from its words the way the layout's real dataset does
    (UCF-101 ``MoveLeft``, HMDB-51 ``move_left``: ``Layout.class_name``).

    Sorted because the real datasets index their classes alphabetically
    (UCF-101's classInd.txt, Kinetics' label map), and readers that sort folder
    names must agree with the index the annotation files give.
    """
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes (--classes) must be between 2 and {MAX_CLASSES}; got {num_classes}")
    num_appearance = num_classes // 2
    specs = [
        ClassSpec(class_name(words), "motion", words, motion=motion)
        for words, motion in list(MOTIONS.items())[: num_classes - num_appearance]
    ]
    for i, (colour, hue) in enumerate(COLOURS[:num_appearance]):
        shape = SHAPES[i % len(SHAPES)]
        words = (colour, shape + "s")
        specs.append(ClassSpec(class_name(words), "appearance", words, hue=hue, shape=shape))
    return sorted(specs, key=lambda spec: spec.name)
