import pytest
import torch
import torchvision
from torch import nn

from models.inflate import (
    ReplicateTimePadConv3d,
    inflate,
    inflate_batchnorm,
    inflate_conv,
    inflate_pool,
)


def _randomise(model: nn.Module) -> nn.Module:
    """Weights and BN statistics that keep activations alive (GoogLeNet's own init
    shrinks them to ~1e-12 by the last layer, which would make any comparison pass)."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, 0.0, 0.1)
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


NETWORKS = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=7),
    "googlenet": lambda: torchvision.models.googlenet(num_classes=7, aux_logits=False, init_weights=False,
                                                      transform_input=True),
}


def _boring(image: torch.Tensor, frames: int) -> torch.Tensor:
    return image.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()  # N x C x T x H x W


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("init,mode", [("bootstrap", "replicate"), ("centre", "zeros")])
def test_boring_video_gives_2d_output(name, init, mode):
    model = _randomise(NETWORKS[name]())
    image = torch.randn(2, 3, 64, 64)
    model3d = inflate(model, time_kernel=3, init=init, time_padding_mode=mode).eval()
    with torch.no_grad():
        expected = model(image)
        assert expected.std(0).mean() > 1e-2  # the images give different, non-vanishing logits
        for frames in (4, 7):
            out = model3d(_boring(image, frames))
            assert out.shape == expected.shape
            torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_zero_time_padding_breaks_boring_video_at_the_borders():
    """Why "replicate" exists: with the papers' zero padding the border frames differ."""
    model = _randomise(torchvision.models.resnet18(num_classes=7))
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        diff = (inflate(model, time_padding_mode="zeros").eval()(_boring(image, 4)) - model(image)).abs().max()
    assert diff > 1e-3


def test_inflate_leaves_the_2d_model_alone_and_uses_per_layer_kernels():
    model = torchvision.models.resnet18(num_classes=7)
    kernels = {"conv1": 5}
    model3d = inflate(model, lambda name, conv: kernels.get(name, 1),
                      time_stride=lambda name, module: 2 if name == "maxpool" else 1, pool_time_kernel=3)
    assert isinstance(model.conv1, nn.Conv2d)
    assert model3d.conv1.weight.shape == (64, 3, 5, 7, 7)
    assert model3d.layer1[0].conv1.weight.shape == (64, 64, 1, 3, 3)
    assert model3d.maxpool.kernel_size == (3, 3, 3) and model3d.maxpool.stride == (2, 2, 2)
    assert isinstance(model3d.avgpool, nn.AdaptiveAvgPool3d)
    out = model3d(torch.randn(1, 3, 8, 32, 32))
    assert out.shape == (1, 7)


def test_inflate_conv_bootstrap_and_centre_weights():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    boot = inflate_conv(conv, 3, time_stride=2)
    assert boot.weight.shape == (6, 4, 3, 3, 3)
    assert boot.stride == (2, 2, 2) and boot.padding == (1, 1, 1)
    for t in range(3):
        torch.testing.assert_close(boot.weight[:, :, t], conv.weight / 3)
    torch.testing.assert_close(boot.weight.sum(2), conv.weight)
    torch.testing.assert_close(boot.bias, conv.bias)

    centre = inflate_conv(conv, 5, init="centre")
    torch.testing.assert_close(centre.weight[:, :, 2], conv.weight)
    assert centre.weight[:, :, [0, 1, 3, 4]].abs().sum() == 0
    assert centre.padding == (2, 1, 1)


def test_replicate_padding_conv_keeps_length_and_conv3d_state_dict():
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    rep = inflate_conv(conv, 3, time_padding_mode="replicate")
    assert isinstance(rep, ReplicateTimePadConv3d) and isinstance(rep, nn.Conv3d)
    assert set(rep.state_dict()) == {"weight"}
    x = torch.randn(1, 3, 6, 8, 8)
    assert rep(x).shape == (1, 5, 6, 8, 8)
    with pytest.raises(ValueError, match="init"):
        inflate_conv(conv, 3, init="mean")


def test_inflate_batchnorm_copies_parameters_and_running_stats():
    bn = nn.BatchNorm2d(4, eps=1e-3)
    bn.train()(torch.randn(8, 4, 5, 5))  # moves the running stats away from 0 / 1
    nn.init.normal_(bn.weight)
    bn3d = inflate_batchnorm(bn)
    assert isinstance(bn3d, nn.BatchNorm3d) and bn3d.eps == 1e-3
    for key, value in bn.state_dict().items():
        torch.testing.assert_close(bn3d.state_dict()[key], value)


def test_inflate_pool():
    maxpool = inflate_pool(nn.MaxPool2d(3, stride=2, padding=1), 3, 2)
    assert (maxpool.kernel_size, maxpool.stride, maxpool.padding) == ((3, 3, 3), (2, 2, 2), (1, 1, 1))
    avg = inflate_pool(nn.AvgPool2d(2), 2, 2)
    assert avg(torch.randn(1, 1, 4, 4, 4)).shape == (1, 1, 2, 2, 2)
    assert inflate_pool(nn.AdaptiveAvgPool2d(1)).output_size == (1, 1, 1)
    with pytest.raises(TypeError):
        inflate_pool(nn.ReLU())
