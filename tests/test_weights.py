import pytest
import torch
import torchvision

from models.stream2d import ResNetStream
from models.weights import get_state_dict, load_checked


def test_shape_mismatch_names_the_layer(tmp_path):
    other = torchvision.models.resnet18()
    other.layer2[0].conv1 = torch.nn.Conv2d(64, 128, 5, stride=2, padding=2, bias=False)
    path = tmp_path / "bad.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match=r"layer2\.0\.conv1\.weight: shape \(128, 64, 5, 5\)"):
        ResNetStream(3, depth=18, weights=str(path))


def test_missing_and_unexpected_keys_are_named(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError) as error:
        ResNetStream(3, depth=34, weights=str(path))
    assert "layer1.2.conv1.weight: missing" in str(error.value)

    state = torchvision.models.resnet18().state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="extra.weight: in test but not in the network"):
        load_checked(torchvision.models.resnet18(), state, "test")


def test_classifier_size_follows_the_file_and_old_files_without_bn_counters_load(tmp_path):
    reference = torchvision.models.resnet18(num_classes=101)
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "r18_ucf.pth"
    torch.save(state, path)
    net = ResNetStream(51, depth=18, weights=str(path))
    assert net.fc.out_features == 51
    torch.testing.assert_close(net.features.layer1[0].bn1.running_var, reference.layer1[0].bn1.running_var)


def test_unknown_weights_name_lists_the_names_without_downloading():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        get_state_dict("IMAGENET_V9", "resnet18")


def test_a_file_without_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(TypeError, match="not a state dict"):
        get_state_dict(str(path), "resnet18")
