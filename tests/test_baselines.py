"""The I3D paper's other baselines (Table 1): shapes on tiny inputs and parameter counts."""

import pytest
import torch

from models.c3d import C3D
from models.convnet_lstm import ConvNetLSTM


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def test_convnet_lstm():
    model = ConvNetLSTM(num_classes=400).eval()
    print(f"ConvNet+LSTM: {count(model):,} parameters at 400 classes (paper: 9M)")
    assert 8.5e6 < count(model) < 9.5e6
    assert model.input_spec.dims == 3 and model.input_spec.frames == 25
    features = model.forward_features(torch.randn(2, 3, 4, 64, 64))
    assert features.shape == (2, 4, 512)
    per_time = model.forward_head(features, per_time=True)
    assert per_time.shape == (2, 400, 4)
    assert torch.allclose(model.forward_head(features), per_time.mean(dim=2))
    model.readout = "last"
    assert torch.equal(model.forward_head(features), per_time[:, :, -1])
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 2, 64, 64)).shape == (1, 3)


@torch.no_grad()
def test_convnet_lstm_on_resnet_and_unknown_backbone():
    model = ConvNetLSTM(num_classes=5, backbone="resnet18").eval()
    assert model.lstm.input_size == 512
    assert ConvNetLSTM(5, backbone="resnet18", frames=8, input_size=32).input_spec.size == 32
    assert model(torch.randn(1, 3, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ValueError, match="vgg16"):
        ConvNetLSTM(backbone="vgg16")


@torch.no_grad()
def test_c3d():
    model = C3D(num_classes=400).eval()
    print(f"3D-ConvNet (C3D + BN): {count(model):,} parameters at 400 classes (paper: 79M)")
    assert 78e6 < count(model) < 80e6
    assert model.input_spec.frames == 16 and model.input_spec.size == 112
    features = model.forward_features(torch.randn(1, 3, 16, 112, 112))
    assert features.shape == (1, 512, 1, 4, 4)
    assert model.forward_head(features).shape == (1, 400)
    model.reset_classifier(10)
    assert model.forward_head(features).shape == (1, 10)
    small = C3D(num_classes=3, input_size=32).eval()
    assert small.input_spec.size == 32 and small(torch.randn(1, 3, 16, 32, 32)).shape == (1, 3)
