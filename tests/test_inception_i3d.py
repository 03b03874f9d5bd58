import pytest
import torch
import torch.nn.functional as F
import torchvision

from models.inception_i3d import (
    InceptionI3D,
    MaxPool3dSame,
    inflate_googlenet,
    pad_same,
    same_padding,
)
from models.input_spec import flow_unit, symmetric_rgb

torch.manual_seed(0)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def rgb() -> InceptionI3D:
    return InceptionI3D().eval()


def test_parameter_count_matches_deepmind_rgb_400(rgb):
    assert count(rgb) == 12_697_264


def test_flow_stream_differs_only_in_the_first_conv():
    flow = InceptionI3D(modality="flow")
    assert flow.input_spec == flow_unit()
    assert count(flow) == 12_697_264 - 64 * 7 * 7 * 7  # one input channel fewer


def test_input_spec(rgb):
    assert rgb.input_spec == symmetric_rgb()
    assert InceptionI3D(frames=32).input_spec.frames == 32
    assert InceptionI3D(in_channels=4).input_spec.channels == 4


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    (224, 7, 2, (2, 3)),  # TF: out 112, total (112-1)*2+7-224 = 5
    (64, 7, 2, (2, 3)),
    (10, 7, 2, (2, 3)),
    (9, 7, 2, (3, 3)),    # TF: out 5, total (5-1)*2+7-9 = 6
    (112, 3, 2, (0, 1)),  # TF: out 56, total 55*2+3-112 = 1, extra at the back
    (7, 3, 2, (1, 1)),    # TF: out 4, total 3*2+3-7 = 2
    (8, 2, 2, (0, 0)),
    (7, 2, 2, (0, 1)),    # TF: out 4, total 3*2+2-7 = 1
    (5, 3, 1, (1, 1)),
    (5, 1, 1, (0, 0)),
])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_pad_same_orders_time_height_width():
    x = torch.zeros(1, 1, 9, 112, 7)
    padded = pad_same(x, (7, 3, 2), (2, 2, 2))
    assert padded.shape == (1, 1, 9 + 6, 112 + 1, 7 + 1)


def test_max_pool_padding_never_wins_and_equals_zero_padding_after_relu():
    x = -torch.rand(1, 1, 1, 2, 2) - 1.0
    assert MaxPool3dSame(3, 1)(x).max() < 0  # -inf padding, as TensorFlow
    x = torch.relu(torch.randn(1, 4, 5, 9, 9))
    pool = MaxPool3dSame(3, 2)
    zero_padded = F.max_pool3d(pad_same(x, pool.kernel, pool.stride), 3, 2)  # the port's way
    assert torch.equal(pool(x), zero_padded)


@torch.no_grad()
def test_paper_sized_clip(rgb):
    x = torch.randn(1, 3, 64, 224, 224)
    features = rgb.forward_features(x)
    assert features.shape == (1, 1024, 8, 7, 7)
    per_time = rgb.forward_head(features, per_time=True)
    assert per_time.shape == (1, 400, 7)  # as the port returns them
    logits = rgb.forward_head(features)
    assert logits.shape == (1, 400)
    assert torch.allclose(logits, per_time.mean(dim=2))


@torch.no_grad()
def test_odd_sizes_and_flow(rgb):
    features = rgb.forward_features(torch.randn(1, 3, 10, 112, 112))
    assert features.shape == (1, 1024, 2, 4, 4)
    assert rgb.forward_head(features).shape == (1, 400)  # 2x7x7 pool shrunk to 2x4x4
    assert rgb(torch.randn(1, 3, 5, 37, 61)).shape == (1, 400)
    flow = InceptionI3D(5, modality="flow").eval()
    assert flow(torch.randn(1, 2, 9, 48, 64)).shape == (1, 5)


@torch.no_grad()
def test_endpoints(rgb):
    x = torch.randn(1, 3, 8, 64, 64)
    out = rgb.forward_endpoints(x, ["Conv3d_1a_7x7", "MaxPool3d_3a_3x3", "Mixed_4f"])
    assert list(out) == ["Conv3d_1a_7x7", "MaxPool3d_3a_3x3", "Mixed_4f"]
    assert out["Conv3d_1a_7x7"].shape == (1, 64, 4, 32, 32)
    assert out["MaxPool3d_3a_3x3"].shape == (1, 192, 4, 8, 8)
    assert out["Mixed_4f"].shape == (1, 832, 2, 4, 4)
    assert torch.equal(rgb.forward_endpoints(x, ["Mixed_5c"])["Mixed_5c"], rgb.forward_features(x))
    with pytest.raises(ValueError, match="Mixed_6a"):
        rgb.forward_endpoints(x, ["Mixed_6a"])


def test_reset_classifier():
    model = InceptionI3D(dropout=0.0)
    model.reset_classifier(101)
    assert model.num_classes == 101
    assert model.logits.conv3d.weight.shape == (101, 1024, 1, 1, 1)
    assert model.logits.conv3d.bias.shape == (101,)


@pytest.fixture(scope="module")
def googlenet() -> torchvision.models.GoogLeNet:
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    with torch.no_grad():  # non-trivial batch-norm state, so a misplaced copy shows
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_googlenet_inflation_puts_each_weight_in_its_place(googlenet, tmp_path):
    path = tmp_path / "googlenet.pth"
    torch.save(googlenet.state_dict(), path)  # with aux heads, as torchvision's file
    model = InceptionI3D(10, weights=str(path))
    pairs = {"conv1": ("Conv3d_1a_7x7", 7), "conv3": ("Conv3d_2c_3x3", 3),
             "inception3a.branch1": ("Mixed_3b.b0", 1), "inception3a.branch2.1": ("Mixed_3b.b1b", 3),
             "inception4a.branch3.0": ("Mixed_4b.b2a", 1), "inception4e.branch3.1": ("Mixed_4f.b2b", 3),
             "inception5b.branch4.1": ("Mixed_5c.b3b", 1)}
    for name2d, (name3d, time) in pairs.items():
        conv2d, unit = googlenet.get_submodule(name2d), model.endpoints.get_submodule(name3d)
        assert unit.conv3d.weight.shape[2] == time
        for t in range(time):  # bootstrap: every slice is the 2D kernel / T
            assert torch.allclose(unit.conv3d.weight[:, :, t], conv2d.conv.weight / time)
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(unit.bn, key), getattr(conv2d.bn, key)), (name3d, key)
    assert model.logits.conv3d.weight.shape == (10, 1024, 1, 1, 1)
    assert model.input_spec == symmetric_rgb()


def test_googlenet_inflation_for_flow(googlenet, tmp_path):
    path = tmp_path / "googlenet.pth"
    torch.save(googlenet.state_dict(), path)
    model = InceptionI3D(modality="flow", weights=str(path))
    assert model.input_spec == flow_unit()
    weight2d = googlenet.conv1.conv.weight.mean(dim=1) / 7  # cross-modality: RGB mean
    for channel in range(2):
        assert torch.allclose(model.endpoints.Conv3d_1a_7x7.conv3d.weight[:, channel, 3], weight2d)


@torch.no_grad()
def test_googlenet_inflated_first_conv_on_a_boring_video(googlenet):
    # Exact only where the 7-frame window lies inside the clip and with the same (SAME)
    # spatial padding; the whole network's output differs from the 2D one (see docstring).
    model = InceptionI3D()
    inflate_googlenet(model, googlenet.state_dict())
    model.eval()
    image = torch.randn(1, 3, 32, 32)
    video = image.unsqueeze(2).expand(-1, -1, 9, -1, -1)  # 9 frames: time padding (3, 3)
    out3d = model.forward_endpoints(video, ["Conv3d_1a_7x7"])["Conv3d_1a_7x7"]
    padded = F.pad(image, (2, 3, 2, 3))
    out2d = F.relu(googlenet.conv1.bn(F.conv2d(padded, googlenet.conv1.conv.weight, stride=2)))
    assert out3d.shape == (1, 64, 5, 16, 16)
    assert torch.allclose(out3d[:, :, 2], out2d, atol=1e-5)


@pytest.mark.parametrize("name", ["IMAGENET1K_V1", "GoogLeNet_Weights.IMAGENET1K_V1", "DEFAULT"])
def test_a_googlenet_weights_name_resolves_to_torchvisions_imagenet_file(name, googlenet, monkeypatch):
    # Nothing is downloaded: the enum member's fetch is replaced, after the name has resolved to it.
    fetched = []

    def get_state_dict(self, *args, **kwargs):
        fetched.append(self)
        return googlenet.state_dict()

    monkeypatch.setattr(torchvision.models.GoogLeNet_Weights, "get_state_dict", get_state_dict)
    model = InceptionI3D(5, modality="flow", weights=name)
    assert fetched == [torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1]
    assert torch.allclose(model.endpoints.Mixed_5c.b0.conv3d.weight[:, :, 0],
                          googlenet.inception5b.branch1.conv.weight)


def test_unknown_weights_name_one_clear_error():
    with pytest.raises(ValueError, match=r"weights='IMAGENET_V9' is neither a file nor a weights name of googlenet"):
        InceptionI3D(weights="IMAGENET_V9")


def test_a_port_file_is_told_apart_from_googlenet_weights(tmp_path):
    from models.i3d_port import export_port_state_dict
    source = InceptionI3D(7, frames=8).eval()
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(export_port_state_dict(source), path)
    same, other = InceptionI3D(7, weights=str(path)), InceptionI3D(3, weights=str(path))
    assert torch.equal(same.logits.conv3d.weight, source.logits.conv3d.weight)
    assert torch.equal(other.endpoints.Mixed_5c.b0.conv3d.weight, source.endpoints.Mixed_5c.b0.conv3d.weight)
    assert other.logits.conv3d.weight.shape[0] == 3


@pytest.mark.parametrize("config", ["i3d_rgb_kinetics400", "i3d_flow_kinetics400"])
def test_the_kinetics_configs_start_from_imagenet_googlenet(config, googlenet, monkeypatch):
    # The paper's starting point (section 2.3), reached from YAML; the fetch is replaced, nothing downloads.
    from collections.abc import Callable
    from pathlib import Path

    import yaml
    from jsonargparse import ArgumentParser
    from torch import nn

    monkeypatch.setattr(torchvision.models.GoogLeNet_Weights, "get_state_dict",
                        lambda self, *args, **kwargs: googlenet.state_dict())
    block = yaml.safe_load((Path(__file__).parents[1] / "configs" / f"{config}.yaml").read_text())
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--network", type=Callable[[int], nn.Module])
    network = parser.instantiate(parser.parse_object({"network": block["model"]["init_args"]["network"]})).network(400)
    conv1 = googlenet.conv1.conv.weight / 7
    if network.input_spec.modality == "flow":
        conv1 = conv1.mean(dim=1, keepdim=True).expand(-1, 2, -1, -1)
    assert torch.allclose(network.endpoints.Conv3d_1a_7x7.conv3d.weight[:, :, 3], conv1)
