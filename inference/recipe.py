"""``Recipe``: the typed form of a checkpoint's ``recipe`` (``lightning_modules.recipe``).

What a trained model needs to see a new video as it saw its test videos: the module's
config, the class names, the data's test settings (``augment``, ``sampling``, ``test``,
``decoder``, ``flow_layout``) and, for flow models, ``FlowSettings``: the settings its
training flow was extracted with, so that inference computes the same flow
(``FlowSettings.extraction_config()``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from datamodules.settings import EvalProtocol, FrameSampling
from datamodules.transforms import Augmentation
from flow.extraction_config import ExtractionConfig
from flow.layout import FrameLayout
from lightning_modules.recipe import RECIPE_VERSION, plain


class FlowUnknownError(ValueError):
    """The recipe cannot say how the model's flow was computed (another tool's flow)."""


@dataclass(frozen=True)
class FlowSettings:
    """How the training flow was extracted (a training video's meta.json).

    ``algorithm`` None: unknown (the flow had no meta.json); ``reason`` says why, and
    ``extraction_config`` refuses with it.
    """

    algorithm: str | None
    params: dict = field(default_factory=dict)
    bound: float = 0.0
    jpeg_quality: int = 0
    step: int = 1
    backward: bool = False
    decoder: str = ""
    short_side: int = 0
    layout: dict = field(default_factory=dict)
    start_index: int = 1
    reason: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> FlowSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def known(self) -> bool:
        return self.algorithm is not None

    def extraction_config(self, **overrides: Any) -> ExtractionConfig:
        """The exact settings the training flow was extracted with (``overrides``: how to run
        them, e.g. ``threads``, ``batch``; not what they compute).

        Raises:
            FlowUnknownError: the flow's settings are unknown (``reason``).
        """
        if not self.known:
            raise FlowUnknownError(f"the model's flow settings are unknown: {self.reason}")
        # meta.json began recording the decoder when PyAV replaced decord as the extractor's
        # default (commit 099242d): flow without one was decoded by decord.
        decoder = self.decoder or "decord"
        layout = FrameLayout.from_templates(self.layout, self.start_index) if self.layout else ExtractionConfig.layout
        return ExtractionConfig(algorithm=self.algorithm, params=dict(self.params), short_side=self.short_side,
                                step=self.step, bound=self.bound, quality=self.jpeg_quality, backward=self.backward,
                                layout=layout, decoder=decoder, **overrides)


@dataclass(frozen=True)
class Recipe:
    """A checkpoint's recipe (``lightning_modules.recipe`` writes it; ``from_dict`` reads it).

    Args:
        model: the module's config: ``class_path`` and ``init_args`` (networks included, with
            ``num_classes``; no optimizer or scheduler).
        classes: class names in label order; None when unknown (scores by class index).
        augment: the data's ``augment:`` block (short side, flip, flow mean subtraction).
        sampling: the data's ``sampling:`` block (3D stride, bi-directional stacks, stacking).
        test: the test protocol (``test.crops`` as the test took them).
        decoder: the data's RGB decoder (``loader.decoder``).
        flow_layout: the name of the stored flow's layout (``roots.flow_layout``).
        flow: the training flow's extraction settings; None for models that read no flow.
        version: the recipe format's version.
    """

    model: dict
    classes: list[str] | None = None
    augment: Augmentation = Augmentation()
    sampling: FrameSampling = FrameSampling()
    test: EvalProtocol = EvalProtocol()
    decoder: str = "auto"
    flow_layout: str = "ours"
    flow: FlowSettings | None = None
    version: int = RECIPE_VERSION

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        """Read a checkpoint's ``recipe`` dict; ValueError (one line) for a newer or malformed one."""
        if not isinstance(data, dict):
            raise ValueError(f"the recipe is a {type(data).__name__}, not a dict")
        version = data.get("version")
        if not isinstance(version, int) or version > RECIPE_VERSION:
            raise ValueError(f"recipe version {version!r}: this code reads versions up to {RECIPE_VERSION} "
                             "(written by a newer version of the project?)")
        model = data.get("model")
        if not isinstance(model, dict) or "class_path" not in model:
            raise ValueError("the recipe has no model config (class_path, init_args)")
        blocks = data.get("data") or {}
        try:
            augment = Augmentation(**{**blocks.get("augment", {}),
                                      "scales": tuple(blocks.get("augment", {}).get("scales", Augmentation.scales))})
            sampling = FrameSampling(**blocks.get("sampling", {}))
            test = EvalProtocol(**blocks.get("test", {}))
        except TypeError as error:
            raise ValueError(f"the recipe's data blocks do not fit this code: {error}") from None
        flow = data.get("flow")
        classes = data.get("classes")
        return cls(model=model, classes=list(classes) if classes is not None else None, augment=augment,
                   sampling=sampling, test=test, decoder=blocks.get("decoder", "auto"),
                   flow_layout=blocks.get("flow_layout", "ours"),
                   flow=FlowSettings.from_dict(flow) if flow is not None else None, version=version)

    def to_dict(self) -> dict:
        """The checkpoint form (``from_dict(recipe.to_dict()) == recipe``)."""
        return {
            "version": self.version, "model": plain(self.model), "classes": self.classes,
            "data": {"augment": plain(asdict(self.augment)), "sampling": plain(asdict(self.sampling)),
                     "test": plain(asdict(self.test)), "decoder": self.decoder, "flow_layout": self.flow_layout},
            "flow": plain(asdict(self.flow)) if self.flow is not None else None,
        }
