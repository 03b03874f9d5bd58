"""``weights=``: a torchvision weights name or a local state-dict file.

Weights are downloaded only when a user names them ("IMAGENET1K_V1", "DEFAULT", or the
enum's own spelling "GoogLeNet_Weights.IMAGENET1K_V1"); a local file is read with
``torch.load(..., weights_only=True)`` (no pickled code runs). Loading is strict, and a
mismatch names every offending layer. Whether a network may be evaluated as it is, is
not the network's business: ``lightning_modules.provenance`` decides from where the
module's weights were loaded.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn


def get_state_dict(weights: str, builder: str) -> dict[str, torch.Tensor]:
    """The state dict ``weights`` names for torchvision's ``builder`` (e.g. "resnet50").

    Args:
        weights: a path to a local file holding a state dict of the torchvision
            model, or a member of the builder's weights enum ("IMAGENET1K_V1",
            "DEFAULT", "GoogLeNet_Weights.IMAGENET1K_V1"), which torchvision downloads
            (and caches) on first use.
        builder: torchvision's builder name.
    """
    path = Path(weights)
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise TypeError(f"{weights} holds a {type(state).__name__}, not a state dict")
        return dict(state)
    enum = torchvision.models.get_model_weights(builder)
    weights = weights.removeprefix(f"{enum.__name__}.")  # str(GoogLeNet_Weights.IMAGENET1K_V1)
    if weights not in enum.__members__:
        raise ValueError(f"weights={weights!r} is neither a file nor a weights name of {builder} "
                         f"(names: {', '.join(enum.__members__)})")
    return enum[weights].get_state_dict(progress=True)


def load_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model`` strictly; on a mismatch, name each layer.

    BatchNorm's ``num_batches_tracked`` counters may be absent (older checkpoints
    lack them) and are then kept from the model.
    """
    own = model.state_dict()
    state = dict(state_dict)
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    problems = [f"  {key}: missing from {source}" for key in own if key not in state]
    problems += [f"  {key}: in {source} but not in the network" for key in state if key not in own]
    problems += [f"  {key}: shape {tuple(value.shape)} in {source}, {tuple(own[key].shape)} in the network"
                 for key, value in state.items() if key in own and value.shape != own[key].shape]
    if problems:
        raise ValueError(f"{source} does not fit {type(model).__name__}:\n" + "\n".join(problems))
    model.load_state_dict(state, strict=True)


def torchvision_model(builder: str, weights: str | None, *, classifier: str,
                      ignore: Sequence[str] = (), **kwargs) -> nn.Module:
    """A torchvision 2D network, random or with ``weights`` loaded (see ``get_state_dict``).

    The classifier is sized to the weights (their class count), to be replaced by
    the caller; keys starting with a prefix in ``ignore`` (unused auxiliary heads)
    are dropped from the weights first.
    """
    if weights is None:
        return torchvision.models.get_model(builder, weights=None, **kwargs)
    state = {key: value for key, value in get_state_dict(weights, builder).items()
             if not key.startswith(tuple(ignore))}
    classifier_weight = state.get(f"{classifier}.weight")
    if classifier_weight is not None:
        kwargs["num_classes"] = classifier_weight.shape[0]
    model = torchvision.models.get_model(builder, weights=None, **kwargs)
    load_checked(model, state, f"weights {weights!r}")
    return model
