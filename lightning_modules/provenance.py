"""Where a module's weights come from, and the refusal to evaluate networks nobody trained.

An accuracy from a random classifier looks like any other number (about 1/C), so
validate, test and predict run only when every stream's network, classifier included,
was trained for the task, which is one of:

- trained in this process (a training step ran: ``trainer.fit`` before ``trainer.test``);
- loaded from a checkpoint of the module (``ckpt_path``, ``load_from_checkpoint``, or any
  ``load_state_dict`` of the whole module);
- loaded, classifier included, by ``load_stream_weights`` (TwoStreamClassifier's
  ``spatial_checkpoint`` / ``temporal_checkpoint``: a VideoClassifier checkpoint, a
  MultiTaskClassifier checkpoint with a head of as many classes, or a DeepMind-port I3D file
  with as many classes).

The module records these (``track_weights`` installs the record: ``weights_origin`` for the
whole module, ``stream_weights`` per stream) and this file decides from the record and the
``ckpt_path``. Networks carry no mark: the weights a network is built with (its
``weights=``: ImageNet, a Kinetics I3D file) are where training starts, whatever its
classifier holds.

The CLI checks before it runs validate, test or predict, and installs
``RefuseUntrainedEvaluation``; Python code that calls ``Trainer.test`` itself adds that
callback to its Trainer to get the same refusal.
"""

from os import PathLike
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from models.adapt import classifier_name
from models.i3d_port import is_port_state_dict, load_port_weights
from models.weights import load_checked

TRAINED_HERE = "training in this process"
LOADED = "a loaded state dict"


class UntrainedNetworkError(RuntimeError):
    """Evaluation asked of a network whose classifier nobody trained for the task."""


def _mark_loaded(module: nn.Module, incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook: the whole module's weights now come from a checkpoint."""
    module.weights_origin = LOADED


def track_weights(module: pl.LightningModule) -> None:
    """Start the record of where ``module``'s weights come from: nothing yet. A training step
    sets ``module.weights_origin = TRAINED_HERE``; loading the module's state dict sets it too."""
    module.weights_origin = None
    module.stream_weights = {}  # stream -> the file its network, classifier included, was loaded from
    module.register_load_state_dict_post_hook(_mark_loaded)


def load_network_weights(network: nn.Module, checkpoint: str | Path, prefix: str = "network.") -> nn.Module:
    """Load a whole network, classifier included, from ``checkpoint``, strictly.

    ``checkpoint`` is a Lightning checkpoint of a module that held the network at ``prefix``
    (Lightning 2.x checkpoints of these modules hold plain values only, so
    ``weights_only=True`` reads them and no code from the file runs), or a DeepMind-port
    I3D file (``models.i3d_port``) with as many classes as the network. A
    ``MultiTaskClassifier`` checkpoint gives its shared network and, as the classifier, the
    one head with as many classes as the network's (the two-stream paper fuses its multi-task
    temporal network's UCF-101 scores, Table 3).
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if is_port_state_dict(state):
        load_port_weights(network, state, name=f"I3D port file {str(checkpoint)!r}")
        return network
    state, weights = network_state(state, checkpoint, prefix)
    network.load_state_dict({**weights, **multi_task_head(state, network, checkpoint)})
    return network


def network_state(state: dict, checkpoint: str | Path, prefix: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """A Lightning checkpoint's state dict, and the weights under ``prefix`` without it.

    Raises:
        KeyError: not a Lightning checkpoint, or nothing under ``prefix``.
    """
    if "state_dict" not in state:
        raise KeyError(f"{checkpoint} is neither a Lightning checkpoint (no 'state_dict') nor an I3D port file")
    state = state["state_dict"]
    weights = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    if not weights:
        raise KeyError(f"{checkpoint} has no weights under {prefix!r}; its keys start with "
                       f"{sorted({key.split('.')[0] for key in state})}")
    return state, weights


def load_backbone_weights(network: nn.Module, checkpoint: str | Path, prefix: str = "network.") -> nn.Module:
    """Start ``network`` from another task's: every weight of ``checkpoint``'s network but its
    classifier, which stays as built (the two-stream paper's HMDB-51 temporal network
    fine-tuned from UCF-101's, Table 2). Never makes the network evaluable.

    Args:
        network: the network to start.
        checkpoint: a Lightning checkpoint of a ``VideoClassifier`` or ``MultiTaskClassifier``
            (whose heads are left out too).
        prefix: where the checkpoint's module held the network.
    """
    _, weights = network_state(torch.load(checkpoint, map_location="cpu", weights_only=True), checkpoint, prefix)
    head = classifier_name(network) + "."
    own = {key: value for key, value in network.state_dict().items() if key.startswith(head)}
    load_checked(network, {**{key: value for key, value in weights.items() if not key.startswith(head)}, **own},
                 f"{checkpoint}'s network")
    return network


def multi_task_head(state: dict[str, torch.Tensor], network: nn.Module,
                    checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The head of a ``MultiTaskClassifier`` state dict (``heads.<d>.weight``/``bias``) with as
    many classes as ``network``'s classifier, under the classifier's names; {} for other modules.

    Raises:
        ValueError: no head, or several, has as many classes.
    """
    heads = sorted({key.split(".")[1] for key in state if key.startswith("heads.")})
    if not heads:
        return {}
    name = classifier_name(network)
    own = network.get_classifier().state_dict()  # weight then bias; I3D's is a 1x1x1 convolution, the heads linear
    classes = next(iter(own.values())).shape[0]
    matching = [head for head in heads if state[f"heads.{head}.weight"].shape[0] == classes]
    if len(matching) != 1:
        sizes = [state[f"heads.{head}.weight"].shape[0] for head in heads]
        raise ValueError(f"{checkpoint}: a multi-task checkpoint whose heads have {sizes} classes; "
                         f"{'several' if matching else 'none'} of them fit this network's {classes}")
    head = [state[f"heads.{matching[0]}.{param}"] for param in ("weight", "bias")]
    return {f"{name}.{key}": value.reshape(mine.shape) for (key, mine), value in zip(own.items(), head)}


def load_stream_weights(module: pl.LightningModule, stream: str, checkpoint: str | Path) -> None:
    """Load ``stream``'s network from ``checkpoint`` (``load_network_weights``) and record it:
    that stream may be evaluated as it is."""
    load_network_weights(module.stream_network(stream), checkpoint)
    module.stream_weights[stream] = str(checkpoint)


def untrained_streams(module: pl.LightningModule) -> list[str]:
    """The streams whose networks are not trained for the task (see the module docstring).

    A module without streams counts as one network, trained only when its
    ``weights_origin`` says so."""
    if getattr(module, "weights_origin", None) is not None:
        return []
    streams = getattr(module, "streams", None)
    if streams is None:
        return [f"the model ({type(module).__name__})"]
    recorded = getattr(module, "stream_weights", {})
    return [f"the {name} stream ({type(module.stream_network(name)).__name__})" for name in streams
            if name not in recorded]


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
        "neither trained in this process nor loaded from a checkpoint, so the numbers would be chance. Give a "
        f"checkpoint (--ckpt_path last, best or a path; Trainer.{stage}(ckpt_path=...)) or, for two streams, "
        "spatial_checkpoint / temporal_checkpoint (a VideoClassifier checkpoint or an I3D port file with as "
        "many classes). A network's own weights= (ImageNet, a Kinetics I3D file) are where training starts")


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
