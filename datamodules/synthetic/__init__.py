"""The synthetic dataset: the quickstart's and the end-to-end tests' default data.

Videos of moving textured objects in the exact folder and annotation formats of
UCF-101, HMDB-51, Kinetics or Something-Something v2 (each reader's ``synthetic``
layout, ``layouts.py``), with classes that only motion can separate and classes
that only appearance can. ``python -m datamodules.synthetic --help``.
"""

from datamodules.synthetic.generator import SyntheticDataset, generate

__all__ = ["SyntheticDataset", "generate"]
