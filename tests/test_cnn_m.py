import pytest
import torch
from torch import nn

from models.cnn_m import CNNM2048


@pytest.mark.parametrize("modality,channels", [("rgb", 3), ("flow", 20)])
def test_cnn_m_shapes_on_224(modality, channels):
    net = CNNM2048(101, in_channels=channels, modality=modality).eval()
    x = torch.randn(1, channels, 224, 224)
    with torch.no_grad():
        features = net.forward_features(x)
        assert features.shape == (1, 2048)
        assert net.forward_head(features).shape == (1, 101)
        assert net(x).shape == (1, 101)
    assert net.features.conv1.weight.shape == (96, channels, 7, 7)
    assert net.features.conv2.stride == (2, 2)
    assert net.input_spec.channels == channels and net.input_spec.modality == modality


def test_temporal_net_drops_the_lrn_after_conv2():
    spatial = CNNM2048(10)
    temporal = CNNM2048(10, in_channels=20, modality="flow")
    assert isinstance(spatial.features.norm1, nn.LocalResponseNorm)
    assert isinstance(temporal.features.norm1, nn.LocalResponseNorm)
    assert isinstance(spatial.features.norm2, nn.LocalResponseNorm)
    assert isinstance(temporal.features.norm2, nn.Identity)
    assert isinstance(CNNM2048(10, in_channels=20, modality="flow", lrn_after_conv2=True).features.norm2,
                      nn.LocalResponseNorm)


def test_cnn_m_reset_classifier_and_bad_channels():
    net = CNNM2048(10)
    net.reset_classifier(51)
    assert net.fc.out_features == 51
    with pytest.raises(ValueError):
        CNNM2048(10, in_channels=3, modality="flow")
