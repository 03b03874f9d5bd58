"""The synthetic layouts the readers declare: every module of ``datamodules/annotations/``
imported, its ``AnnotationSource`` subclasses walked, their ``synthetic`` layouts collected.

Apart from ``layouts.py`` (the interface the readers import), so that the readers and the
generator's interface do not import each other.
"""

from __future__ import annotations

import importlib
import pkgutil

import datamodules.annotations as package
from datamodules.annotations.source import AnnotationSource
from datamodules.synthetic.layouts import Layout


def synthetic_sources() -> dict[str, type[AnnotationSource]]:
    """Every annotation source in ``datamodules/annotations/`` that declares a synthetic
    layout, by the layout's name (sorted)."""
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    found: dict[str, type[AnnotationSource]] = {}
    pending = list(AnnotationSource.__subclasses__())
    while pending:
        source = pending.pop(0)
        pending += source.__subclasses__()
        layout = vars(source).get("synthetic")  # declared by this class, not inherited
        if layout is None:
            continue
        if layout.name in found:
            raise ValueError(f"{found[layout.name].__name__} and {source.__name__} both declare the synthetic "
                             f"layout {layout.name!r}")
        found[layout.name] = source
    return dict(sorted(found.items()))


def layouts() -> dict[str, Layout]:
    """Every synthetic layout, by name: those the sources in ``datamodules/annotations/`` declare."""
    return {name: source.synthetic for name, source in synthetic_sources().items()}
