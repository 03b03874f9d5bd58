"""Where a module's weights come from, and the refusal to evaluate networks nobody trained.

An accuracy from a random classifier looks like any other number (about 1/C), so
validate, test and predict run only when every stream's network, classifier included,
was trained for the task, which is one of:

- trained in this process (a training step ran: ``trainer.fit`` before ``trainer.test``);
- loaded from a checkpoint of the module (``ckpt_path``, ``load_from_checkpoint``, or any
  ``load_state_dict`` of the whole module);
- built from weights that include its classifier for these classes
  (``models.weights.trained_weights``): an I3D port file with as many classes as the data,
  TwoStreamClassifier's ``spatial_checkpoint`` / ``temporal_checkpoint``.

Backbone-only weights do not count: ImageNet weights under a fresh classifier, or a
Kinetics-400 I3D file under a fresh 101-class head, score at chance until trained.

The CLI checks before it runs validate, test or predict, and installs
``RefuseUntrainedEvaluation``; Python code that calls ``Trainer.test`` itself adds that
callback to its Trainer to get the same refusal.
"""

from os import PathLike
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn

from models.weights import trained_weights

if TYPE_CHECKING:
    from lightning_modules.classifier import StreamsModule

TRAINED_HERE = "training in this process"
LOADED = "a loaded state dict"


class UntrainedNetworkError(RuntimeError):
    """Evaluation asked of a network whose classifier nobody trained for the task."""


def mark_loaded(module: "StreamsModule", incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook of the modules: their weights now come from a checkpoint."""
    module.weights_origin = LOADED


def untrained_streams(module: pl.LightningModule) -> list[str]:
    """The streams whose networks are not trained for the task (see the module docstring).

    A module that is not a ``StreamsModule`` counts as one network, trained only when it
    marks itself (``weights_origin`` or ``models.weights.mark_trained``)."""
    if getattr(module, "weights_origin", None) is not None:
        return []
    streams = getattr(module, "streams", None)
    networks = ({f"the {name} stream": module.stream_network(name) for name in streams} if streams is not None
                else {"the model": module})
    return [f"{name} ({type(network).__name__})" for name, network in networks.items()
            if trained_weights(network) is None]


def require_trained(module: pl.LightningModule, stage: str, ckpt_path: str | PathLike | None) -> None:
    """Raise ``UntrainedNetworkError`` unless ``module`` may be evaluated (``stage``: validate,
    test or predict) with ``ckpt_path`` (None: as it is)."""
    if ckpt_path is not None:
        return
    missing = untrained_streams(module)
    if not missing:
        return
    several = len(missing) > 1
    raise UntrainedNetworkError(
        f"refusing to {stage} a network nobody trained: {' and '.join(missing)} {'were' if several else 'was'} "
        "neither trained in this process nor loaded from a checkpoint or from weights that include "
        f"{'their classifiers' if several else 'its classifier'}, so the numbers would be chance. Give a "
        "checkpoint (--ckpt_path last, best or a path; "
        f"Trainer.{stage}(ckpt_path=...)) or weights with the classifier for these classes (an I3D port file "
        "with as many classes; spatial_checkpoint / temporal_checkpoint). Backbone-only weights (ImageNet, or a "
        "file for another number of classes) leave the classifier random")


class RefuseUntrainedEvaluation(Callback):
    """``require_trained`` at the start of validate, test and predict (validation inside fit runs)."""

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            require_trained(pl_module, trainer.state.fn.value, trainer.ckpt_path)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)
