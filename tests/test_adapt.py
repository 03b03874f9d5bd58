"""The backbone interface every network offers (timm's): its classifier, its pre-logits, no classifier at 0 classes.

Tiny inputs on every network of models/ (CNN-M-2048 is a ``Backbone`` like the streams and
needs 224 x 224; test_cnn_m covers its shapes).
"""

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from models import (
    C3D,
    ConvNetLSTM,
    InceptionI3D,
    ResNetI3D,
    ResNetStream,
)
from models.adapt import adapt_first_conv
from tests.test_classifier import tiny_network

CLASSES = 5

# name: (builder, inputs of one batch of 2)
NETWORKS: dict[str, tuple[Callable[[int], nn.Module], Callable[[], tuple[Tensor, ...]]]] = {
    "backbone": (lambda k: tiny_network(num_classes=k), lambda: (torch.randn(2, 3, 16, 16),)),
    "resnet_stream": (lambda k: ResNetStream(k, depth=18, in_channels=4, modality="flow"),
                      lambda: (torch.randn(2, 4, 32, 32),)),
    "resnet_i3d": (lambda k: ResNetI3D(k, depth=18, frames=4), lambda: (torch.randn(2, 3, 4, 32, 32),)),
    "inception_i3d": (lambda k: InceptionI3D(k, frames=8), lambda: (torch.randn(2, 3, 8, 64, 64),)),
    "convnet_lstm": (lambda k: ConvNetLSTM(k, backbone="resnet18"), lambda: (torch.randn(2, 3, 3, 32, 32),)),
    "c3d": (lambda k: C3D(k), lambda: (torch.randn(2, 3, 16, 112, 112),)),
}


def as_linear(classifier: nn.Module, num_features: int) -> tuple[Tensor, Tensor]:
    """(weight C x num_features, bias C) of a linear classifier or a 1x1x1 conv one."""
    weight, bias = classifier.parameters()
    return weight.reshape(-1, num_features), bias


@pytest.mark.parametrize("name", NETWORKS)
@torch.no_grad()
def test_the_classifier_reads_the_pre_logits(name: str) -> None:
    build, inputs = NETWORKS[name]
    torch.manual_seed(0)
    network = build(CLASSES).eval()
    x = inputs()
    classifier = network.get_classifier()
    assert any(module is classifier for module in network.modules())
    features = network.forward_features(*x)
    pre_logits = network.forward_head(features, pre_logits=True)
    assert pre_logits.shape == (2, network.num_features)
    weight, bias = as_linear(classifier, network.num_features)
    assert weight.shape == (CLASSES, network.num_features)
    torch.testing.assert_close(pre_logits @ weight.T + bias, network(*x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NETWORKS)
@torch.no_grad()
def test_no_classes_no_classifier_the_network_returns_its_pre_logits(name: str) -> None:
    build, inputs = NETWORKS[name]
    network = build(CLASSES).eval()
    x = inputs()
    expected = network.forward_head(network.forward_features(*x), pre_logits=True)
    network.reset_classifier(0)
    assert isinstance(network.get_classifier(), nn.Identity)
    assert not [key for key in network.state_dict() if key.startswith(("fc.", "logits."))]
    torch.testing.assert_close(network(*x), expected)
    network.reset_classifier(3)
    assert network(*x).shape == (2, 3)


def test_a_new_classifier_goes_where_the_network_is() -> None:
    network = tiny_network().to("meta")
    network.reset_classifier(4)
    assert network.get_classifier().weight.device.type == "meta"


def test_first_conv_adaptation_averages_over_the_input_channels() -> None:
    network = tiny_network()
    before = network.features[0].weight.detach().clone()
    adapt_first_conv(network, "features.0", 6)
    after = network.features[0].weight
    assert after.shape == (4, 6, 3, 3)
    torch.testing.assert_close(after, before.mean(dim=1, keepdim=True).expand(-1, 6, -1, -1))
