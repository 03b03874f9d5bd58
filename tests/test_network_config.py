"""Every network is configurable as LightningCLI configures it: ``Callable[[int], nn.Module]``.

The YAML gives ``class_path`` and every ``init_args`` but ``num_classes``; the
LightningModule calls the parsed callable with the dataset's number of classes.
"""

from argparse import ArgumentError
from collections.abc import Callable

import pytest
from jsonargparse import ArgumentParser
from torch import nn

# class_path, init_args, the classifier whose outputs are the classes
NETWORKS = [
    ("models.ResNetStream", {"depth": 18, "in_channels": 20, "modality": "flow"}, "fc"),
    ("models.GoogLeNetStream", {"dropout": 0.7}, "fc"),
    ("models.CNNM2048", {"in_channels": 20, "modality": "flow"}, "fc"),
    ("models.ResNetI3D", {"depth": 18, "inflated_blocks": ["layer1.0"], "time_padding_mode": "replicate"}, "fc"),
    ("models.InceptionI3D", {"modality": "flow", "frames": 32}, "logits.conv3d"),
    ("models.ConvNetLSTM", {"backbone": "resnet18", "readout": "last"}, "fc"),
    ("models.C3D", {"dropout": 0.2}, "fc"),
]


@pytest.fixture(scope="module")
def parser() -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--network", type=Callable[[int], nn.Module])
    return parser


@pytest.mark.parametrize(("class_path", "init_args", "classifier"), NETWORKS,
                         ids=[class_path for class_path, _, _ in NETWORKS])
def test_parsed_network_takes_num_classes_when_called(parser, class_path, init_args, classifier):
    config = parser.parse_object({"network": {"class_path": class_path, "init_args": init_args}})
    network = parser.instantiate(config).network(7)
    assert type(network).__name__ == class_path.rpartition(".")[2]
    head = network.get_submodule(classifier)
    assert (head.out_features if isinstance(head, nn.Linear) else head.out_channels) == 7


def test_num_classes_is_not_a_config_option(parser):
    with pytest.raises(ArgumentError, match="num_classes"):
        parser.parse_object({"network": {"class_path": "models.C3D", "init_args": {"num_classes": 4}}})


@pytest.mark.parametrize(("class_path", "init_args"), [
    ("models.ResNetStream", {"depth": 18, "in_channels": 20, "modality": "flow"}),
    ("models.GoogLeNetStream", {}),
    ("models.InceptionI3D", {"modality": "flow", "frames": 8}),
])
def test_the_crop_size_the_data_cuts_is_the_networks(parser, class_path, init_args):
    """The data has no crop_size: a network declares its input size in input_spec."""
    config = parser.parse_object({"network": {"class_path": class_path, "init_args": {**init_args, "input_size": 64}}})
    assert parser.instantiate(config).network(3).input_spec.size == 64
