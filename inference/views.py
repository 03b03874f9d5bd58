"""``--views``: the test protocol a checkpoint was tested with, or fewer views for speed.

- ``protocol`` (the default): the checkpoint's own test protocol (``recipe.test``: 25
  positions x 10 crops for the 2D papers, clips x crops or the whole video for 3D ones);
- ``centre``: one position (2D) or clip (3D) in the middle of the video, its centre crop;
- ``N``: N positions or clips spread over the video, each its centre crop;
- ``NxC``: N positions or clips x C crops, C one of 1, 3, 5, 10 (or centre, three, five, ten).

Positions and clips are both set to N: a 2D network reads positions, a 3D one clips.
"""

from __future__ import annotations

import dataclasses

from datamodules.settings import EvalProtocol

CROPS = {"1": "centre", "centre": "centre", "center": "centre", "3": "three", "three": "three",
         "5": "five", "five": "five", "10": "ten", "ten": "ten"}


def parse_views(text: str) -> tuple[int, str] | None:
    """``--views`` as (positions or clips, crops), or None for the checkpoint's protocol;
    ValueError with the accepted forms when ``text`` is none of them.

    Args:
        text: ``protocol``, ``centre``, ``N`` or ``NxC``.
    """
    text = text.strip().lower()
    if text == "protocol":
        return None
    if text in ("centre", "center"):
        return 1, "centre"
    count, _, crops = text.partition("x")
    if count.isdigit() and int(count) >= 1 and (not crops or crops in CROPS):
        return int(count), CROPS[crops or "1"]
    raise ValueError(f"--views {text!r}: expected protocol, centre, N (positions or clips, centre crop) or NxC "
                     "(C: 1, 3, 5, 10 or centre, three, five, ten)")


def views_protocol(views: tuple[int, str] | None, base: EvalProtocol) -> EvalProtocol:
    """The test protocol to score with: ``base`` (the checkpoint's) with ``views`` in place.

    Args:
        views: ``parse_views``'s result.
        base: the protocol the checkpoint was tested with.
    """
    if views is None:
        return base
    count, crops = views
    return dataclasses.replace(base, positions=count, clips=count, crops=crops, whole_video=False)

