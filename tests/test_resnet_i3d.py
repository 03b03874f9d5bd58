import pytest
import torch
import torchvision
from torch import nn

from models.non_local import NonLocalBlock
from models.resnet_i3d import (
    ResNetI3D,
    default_inflated_blocks,
    default_non_local_blocks,
)


def test_shape_kernels_and_parameter_count_without_non_local():
    net = ResNetI3D(400).eval()
    body = net.features
    assert body.conv1.weight.shape == (64, 3, 5, 7, 7) and body.conv1.stride == (1, 2, 2)
    assert body.maxpool.stride == (2, 2, 2)
    assert body.layer2[0].conv1.kernel_size == (3, 1, 1) and body.layer2[1].conv1.kernel_size == (1, 1, 1)
    assert body.layer4[1].conv1.kernel_size == (3, 1, 1) and body.layer4[0].conv2.kernel_size == (1, 3, 3)
    # 28.04 M: the figure mmaction2 reports for its I3D-R50 (same inflation pattern, 400 classes)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(28.04e6, rel=1e-3)
    with torch.no_grad():
        assert net.forward_features(torch.randn(1, 3, 8, 64, 64)).shape == (1, 2048)
    assert net.input_spec.dims == 3 and net.input_spec.frames == 32 and net.input_spec.mean == (0.485, 0.456, 0.406)


def test_non_local_blocks_where_the_paper_puts_five():
    net = ResNetI3D(10, non_local=True, frames=8, conv1_time_stride=2).eval()
    blocks = [name for name, m in net.named_modules() if isinstance(m, NonLocalBlock)]
    assert blocks == ["features.layer2.non_local1", "features.layer2.non_local3", "features.layer3.non_local1",
                      "features.layer3.non_local3", "features.layer3.non_local5"]
    assert net.features.layer3.non_local1.theta.in_channels == 1024
    with torch.no_grad():
        assert net(torch.randn(1, 3, 8, 64, 64)).shape == (1, 10)
    assert len(default_non_local_blocks([3, 4, 23, 3])) == 5
    assert len(default_inflated_blocks([3, 4, 6, 3])) == 3 + 2 + 3 + 1


def test_boring_video_matches_the_2d_resnet_it_inflates(tmp_path):
    """Local 2D weights are inflated; fresh non-local blocks are the identity."""
    torch.manual_seed(0)
    net2d = torchvision.models.resnet50()
    for m in net2d.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so copying them matters
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "r50.pth"
    torch.save(net2d.state_dict(), path)
    net = ResNetI3D(10, weights=str(path), non_local=True, time_padding_mode="replicate").eval()
    net2d.fc = nn.Identity()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = net2d.eval()(image)
        out = net.forward_features(image.unsqueeze(2).expand(-1, -1, 8, -1, -1).contiguous())
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_flow_input_and_errors():
    net = ResNetI3D(5, in_channels=2, modality="flow", frames=16)
    assert net.features.conv1.weight.shape == (64, 2, 5, 7, 7)
    assert net.input_spec.modality == "flow" and net.input_spec.flow_clip == 20
    with pytest.raises(ValueError, match="no such blocks"):
        ResNetI3D(5, inflated_blocks=["layer9.0"])
    with pytest.raises(ValueError, match="channels"):
        ResNetI3D(5, in_channels=20, modality="flow")


@pytest.mark.parametrize(("modality", "channels"), [("rgb", 3), ("flow", 2)])
def test_a_resnet_weights_name_resolves_to_torchvisions_imagenet_file(modality, channels, monkeypatch):
    # Nothing is downloaded: the enum member's fetch is replaced, after the name has resolved to it.
    net2d, fetched = torchvision.models.resnet18(), []

    def get_state_dict(self, *args, **kwargs):
        fetched.append(self)
        return net2d.state_dict()

    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", get_state_dict)
    net = ResNetI3D(5, depth=18, in_channels=channels, modality=modality, frames=4,
                    weights="ResNet18_Weights.IMAGENET1K_V1")
    assert fetched == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1]
    assert net.input_spec.size == 224 and ResNetI3D(5, depth=18, input_size=32).input_spec.size == 32
    conv1 = net2d.conv1.weight if modality == "rgb" else net2d.conv1.weight.mean(dim=1, keepdim=True).expand(-1, 2, -1, -1)
    torch.testing.assert_close(net.features.conv1.weight.sum(dim=2), conv1)  # bootstrapped: the 5 slices sum to it
