"""``SaveRecipe``: what inference needs, written into every checkpoint as ``checkpoint["recipe"]``.

A checkpoint alone is then enough to classify a user's video (``inference.load``): the
model's config (to rebuild the module), the class names in label order, the data's test
settings (short side, protocol, sampling, decoder, flow layout) and, for a model that
reads flow, the settings the training flow was extracted with, taken from one training
video's ``meta.json``. Flow written by another tool has no meta.json: the recipe then says
so (``{"algorithm": None, "reason": ...}``), and inference refuses to compute flow rather
than guess.

Plain values only (str, int, float, bool, None, lists, dicts), so that
``torch.load(..., weights_only=True)`` reads it. ``inference.recipe.Recipe`` is the typed
reader of this dict; ``RECIPE_VERSION`` changes when its meaning does.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from datamodules.datamodule import VideoDataModule
from datamodules.multi import MultiDataModule
from flow.meta import FlowMeta
from flow.packed import open_flow_store

RECIPE_VERSION = 1
RECIPE_KEY = "recipe"
# Training settings, not what the module computes: inference never builds an optimizer.
TRAINING_ONLY = ("optimizer", "scheduler")


def plain(value: Any) -> Any:
    """``value`` as the plain types ``torch.load(weights_only=True)`` reads (tuples become lists)."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "as_dict"):  # a jsonargparse Namespace
        return plain(value.as_dict())
    return str(value)  # a Path, an enum


def model_recipe(model_config: dict, num_classes: Any) -> dict:
    """The module's config (``class_path``/``init_args``, networks included) without its
    optimizer and scheduler, and with the number of classes the CLI linked into it."""
    config = plain(model_config)
    init_args = {key: value for key, value in config.get("init_args", {}).items() if key not in TRAINING_ONLY}
    if num_classes is not None:
        init_args["num_classes"] = plain(num_classes)
    return {"class_path": config["class_path"], "init_args": init_args}


def flow_recipe(meta: FlowMeta | None, reason: str = "") -> dict:
    """The extraction settings of ``meta`` (a training video's meta.json); without one, the reason."""
    if meta is None:
        return {"algorithm": None, "reason": reason}
    return {
        "algorithm": meta.algorithm, "params": plain(meta.params), "bound": meta.bound,
        "jpeg_quality": meta.jpeg_quality, "step": meta.step, "backward": meta.backward, "decoder": meta.decoder,
        # The extractor resized each video's short side to this (0 in ExtractionConfig keeps a video's
        # size, so one video's side is then only that video's).
        "short_side": min(meta.width, meta.height), "layout": plain(meta.layout), "start_index": meta.start_index,
    }


def training_flow(datamodule: VideoDataModule | MultiDataModule) -> dict | None:
    """The flow settings of the first training video of ``datamodule`` (a ``MultiDataModule``'s
    first part) when its input reads the frames root, else None."""
    datamodule = datamodule.datamodules[0] if isinstance(datamodule, MultiDataModule) else datamodule
    reads_frames = "flow" in datamodule.keys or datamodule.loader_settings.decoder == "rawframes"
    root = datamodule.roots.frames_root
    if not reads_frames or root is None:
        return None
    index = datamodule.index("train")
    # The index has listed the videos whose flow has no meta.json: no need to open each one again.
    without = set(index.flow_without_meta)
    described = next((video_id for video_id in index.video_ids if video_id not in without), None)
    meta = open_flow_store(root, datamodule.flow_layout).meta(described) if described is not None else None
    if meta is not None:
        return flow_recipe(meta)
    if not index.video_ids:
        return flow_recipe(None, f"no training video has flow under {root}, so its extraction settings are unknown")
    return flow_recipe(None, f"the training flow under {root} has no meta.json (written by another tool), so its "
                             "extraction settings are unknown")


def data_recipe(datamodule: VideoDataModule | MultiDataModule) -> dict:
    """Class names and the test-time data settings of ``datamodule`` (its input known; a
    ``MultiDataModule``: its first part's settings, and no names: its heads have a list each)."""
    multi = isinstance(datamodule, MultiDataModule)
    first = datamodule.datamodules[0] if multi else datamodule
    classes = None if multi else list(datamodule.classes)
    # The crops the test actually took (None in the config means the modality's default).
    test = replace(first.protocol, crops=first.test_crops) if first.test_crops else first.protocol
    return {
        "classes": classes,
        "data": {"augment": plain(asdict(first.augment)), "sampling": plain(asdict(first.frame_sampling)),
                 "test": plain(asdict(test)), "decoder": first.loader_settings.decoder,
                 "flow_layout": first.roots.flow_layout},
        "flow": training_flow(datamodule),
    }


class SaveRecipe(Callback):
    """Writes ``checkpoint["recipe"]`` (module docstring) into every checkpoint of the run.

    Args:
        model_config: the module's config as parsed (``class_path``, ``init_args``).
    """

    def __init__(self, model_config: dict) -> None:
        self.model_config = plain(model_config)
        self._recipe: dict | None = None

    def recipe(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        """Built once per run (it reads the training index and one meta.json)."""
        if self._recipe is None:
            num_classes = pl_module.hparams.get("num_classes") if hasattr(pl_module, "hparams") else None
            # Another DataModule (a user's own) says nothing this project can read back.
            known = isinstance(trainer.datamodule, (VideoDataModule, MultiDataModule))
            data = data_recipe(trainer.datamodule) if known else {"classes": None, "data": None, "flow": None}
            self._recipe = {"version": RECIPE_VERSION, "model": model_recipe(self.model_config, num_classes), **data}
        return self._recipe

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[RECIPE_KEY] = self.recipe(trainer, pl_module)
