"""Fitting a network to our task: input channels, classifier, the backbone interface.

Naming a network's first conv and its classifier (timm's ``first_conv`` /
``classifier``) is what lets one function adapt any of them to 2L flow channels
and one class give all of them the same head.
"""

from dataclasses import dataclass

import torch
from torch import nn

from models.input_spec import InputSpec


@dataclass(frozen=True)
class Layout:
    """Where a network's first conv and its classifier are (qualified module names)."""

    first_conv: str
    classifier: str


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the qualified ``name`` inside ``model``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def adapt_first_conv(model: nn.Module, name: str, in_channels: int) -> None:
    """Give the conv at ``name`` ``in_channels`` inputs, with cross-modality initialisation.

    The filters are averaged over their input channels and the mean is replicated
    over the new ones (TSN, Wang et al. 2016): an ImageNet conv1 becomes a start
    for a 2L-channel flow stack. A conv that already has ``in_channels`` is kept.
    Works on Conv2d and Conv3d.
    """
    conv = model.get_submodule(name)
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise ValueError(f"cannot adapt the grouped conv {name!r}")
    new = type(conv)(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                     dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                     device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)  # out x 1 x k...
        new.weight.copy_(mean.expand_as(new.weight))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    replace_module(model, name, new)


def device_of(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters are (a new classifier goes there too)."""
    return next(module.parameters(), torch.empty(0)).device


def linear_classifier(num_features: int, num_classes: int, device: torch.device | None = None) -> nn.Module:
    """A fresh linear classifier; for 0 classes none (``nn.Identity``), as timm's
    ``reset_classifier(0)``: the network then returns the vector its classifier would read."""
    if num_classes == 0:
        return nn.Identity()
    return nn.Linear(num_features, num_classes, device=device)


def replacement_classifier(network: nn.Module, num_classes: int) -> nn.Module:
    """The fresh linear classifier ``network.reset_classifier`` installs, on the network's device."""
    return linear_classifier(network.num_features, num_classes, device_of(network))


class Backbone(nn.Module):
    """A feature extractor followed by dropout and a linear classifier.

    The interface every network of the project offers (timm's), so heads, fusion and the
    Lightning modules work with any of them: ``forward_features(x)``,
    ``forward_head(features, pre_logits=False) -> N x classes`` (``pre_logits=True``: the
    N x ``num_features`` vector the classifier reads), ``get_classifier()``,
    ``reset_classifier(num_classes)`` (0: no classifier, the network returns its pre-logits),
    ``num_features``, ``input_spec``.

    Args:
        features: maps an input batch to pooled features, N x ``num_features``
            (a torchvision network whose classifier is ``nn.Identity`` qualifies).
        num_features: size of the feature vector.
        num_classes: classes of the new classifier.
        dropout: dropout probability before the classifier.
        input_spec: the input the network expects.
    """

    def __init__(self, features: nn.Module, num_features: int, num_classes: int, dropout: float,
                 input_spec: InputSpec) -> None:
        super().__init__()
        self.features = features
        self.num_features = num_features
        self.input_spec = input_spec
        self.dropout = nn.Dropout(dropout)
        self.fc = linear_classifier(num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # N x num_features

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(features)  # N x num_features
        return x if pre_logits else self.fc(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = replacement_classifier(self, num_classes)


def classifier_name(network: nn.Module) -> str:
    """Qualified name of the module ``network.get_classifier()`` declares: its head."""
    if not callable(getattr(network, "get_classifier", None)):
        raise TypeError(f"{type(network).__name__} has no get_classifier(), so its head cannot be told apart from "
                        "its backbone (backbone_lr_scale, freeze_backbone and init_checkpoint need it)")
    classifier = network.get_classifier()
    for name, module in network.named_modules():
        if module is classifier and name:
            return name
    raise ValueError(f"{type(network).__name__}.get_classifier() returned no submodule of the network")
