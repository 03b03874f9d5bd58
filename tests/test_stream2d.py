import pytest
import torch
import torchvision

from models.adapt import adapt_first_conv
from models.input_spec import flow_pixels, imagenet_rgb
from models.stream2d import GoogLeNetStream, ResNetStream


def test_resnet_flow_stream_from_local_weights_uses_cross_modality_init(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)

    net = ResNetStream(11, depth=18, in_channels=20, modality="flow", weights=str(path)).eval()
    expected = reference.conv1.weight.mean(dim=1, keepdim=True).expand(-1, 20, -1, -1)
    torch.testing.assert_close(net.features.conv1.weight, expected)
    torch.testing.assert_close(net.features.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert net.input_spec == flow_pixels(fields=10)

    x = torch.randn(2, 20, 64, 64)
    with torch.no_grad():
        features = net.forward_features(x)
        assert features.shape == (2, 512)
        assert net.forward_head(features).shape == (2, 11)
        torch.testing.assert_close(net(x), net.forward_head(features))
    net.reset_classifier(5)
    assert net(x).shape == (2, 5)


def test_resnet_rgb_stream_keeps_the_imagenet_conv1(tmp_path):
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = ResNetStream(3, depth=18, weights=str(path))
    torch.testing.assert_close(net.features.conv1.weight, reference.conv1.weight)
    assert net.input_spec == imagenet_rgb()


def test_adapt_first_conv_works_on_3d_convs_and_keeps_matching_ones():
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, bias=True))
    original = model[0]
    adapt_first_conv(model, "0", 3)
    assert model[0] is original
    adapt_first_conv(model, "0", 2)
    assert model[0].weight.shape == (4, 2, 3, 3, 3)
    torch.testing.assert_close(model[0].weight[:, 1], original.weight.mean(1))
    torch.testing.assert_close(model[0].bias, original.bias)


@pytest.mark.parametrize("depth,features", [(34, 512), (50, 2048)])
def test_resnet_depths(depth, features):
    net = ResNetStream(4, depth=depth, dropout=0.9)
    assert net.num_features == features and net.dropout.p == 0.9


def test_resnet_stream_rejects_unknown_depth_and_bad_channels():
    with pytest.raises(ValueError, match="depth"):
        ResNetStream(4, depth=20)
    with pytest.raises(ValueError, match="channels"):
        ResNetStream(4, depth=18, in_channels=5, modality="flow")


def test_googlenet_stream_flow_and_local_weights_with_aux_heads(tmp_path):
    # torchvision's ImageNet GoogLeNet file holds the auxiliary heads; they are skipped.
    reference = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    path = tmp_path / "googlenet.pth"
    torch.save(reference.state_dict(), path)
    rgb = GoogLeNetStream(6, weights=str(path)).eval()
    assert rgb.features.transform_input and rgb.features.aux1 is None
    torch.testing.assert_close(rgb.features.inception5b.branch1.conv.weight, reference.inception5b.branch1.conv.weight)

    flow = GoogLeNetStream(6, in_channels=20, modality="flow", weights=str(path)).eval()
    assert not flow.features.transform_input
    assert flow.features.conv1.conv.weight.shape == (64, 20, 7, 7)
    with torch.no_grad():
        assert flow(torch.randn(2, 20, 64, 64)).shape == (2, 6)
        assert flow.forward_features(torch.randn(2, 20, 64, 64)).shape == (2, 1024)
