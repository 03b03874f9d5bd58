"""Optimizer defaults and parameter groups: a pretrained backbone may learn slower than its new head.

The head is what the network declares with ``get_classifier()`` (timm's interface:
``fc`` of a ``Backbone``, ``logits`` of Inception I3D...).
"""

from collections.abc import Iterable
from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from models.adapt import classifier_name


class PaperSGD(torch.optim.SGD):
    """SGD with momentum 0.9 and learning rate 1e-2, as the two-stream paper trains.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (per group, scaled by the group's ``lr_scale``).
        momentum: momentum factor.
        weight_decay: L2 penalty.
        nesterov: Nesterov momentum.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4,
                 nesterov: bool = False) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def split_head(network: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(head parameters, backbone parameters) of the network; see ``classifier_name``."""
    head = {id(p) for p in network.get_submodule(classifier_name(network)).parameters()}
    params = list(network.parameters())
    return [p for p in params if id(p) in head], [p for p in params if id(p) not in head]


def parameter_groups(network: nn.Module, lr_scale: float = 1.0, backbone_lr_scale: float = 1.0,
                     freeze_backbone: bool = False) -> list[dict[str, Any]]:
    """Optimizer groups of one network, each with an ``lr_scale`` (see ``configure_optimizers``).

    Args:
        network: the network.
        lr_scale: scales the learning rate of the whole network.
        backbone_lr_scale: further scales that of everything but the head.
        freeze_backbone: train the head only ("last layer only"); the backbone is left
            out of the groups and its ``requires_grad`` switched off.
    """
    if backbone_lr_scale == 1.0 and not freeze_backbone:
        return [{"params": list(network.parameters()), "lr_scale": lr_scale}]
    head, backbone = split_head(network)
    if freeze_backbone:
        for p in backbone:
            p.requires_grad_(False)
        return [{"params": head, "lr_scale": lr_scale}]
    return [{"params": head, "lr_scale": lr_scale}, {"params": backbone, "lr_scale": lr_scale * backbone_lr_scale}]


def configure_optimizers(groups: list[dict[str, Any]], optimizer: OptimizerCallable,
                         scheduler: LRSchedulerCallable | None = None, monitor: str = "val/loss") -> dict[str, Any]:
    """Build the optimizer on the groups, scale each group's learning rate, add the scheduler.

    The scales are applied after the optimizer filled in its configured learning rate, so
    they work with any optimizer; the scheduler is built afterwards and starts from them.
    """
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    groups = [g for g in groups if g["params"]]
    opt = optimizer(groups)
    for group in opt.param_groups:
        group["lr"] *= group.pop("lr_scale", 1.0)
    if scheduler is None:
        return {"optimizer": opt}
    config: dict[str, Any] = {"scheduler": scheduler(opt)}
    if isinstance(config["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau):
        config["monitor"] = monitor
    return {"optimizer": opt, "lr_scheduler": config}
