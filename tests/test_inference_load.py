"""``inference.load``: a trained module from a checkpoint alone, or from a config with
published weights or an older checkpoint; nothing downloaded, bad files named in one line."""

import shutil
import warnings
from pathlib import Path

import pytest
import torch
import torchvision.models._api
import yaml

from datamodules.annotations import Kinetics
from inference.load import Loaded, NoClassNamesWarning, NoRecipeWarning, load_checkpoint, load_config
from inference.recipe import Recipe
from lightning_modules.checkpoints import CheckpointFileError
from lightning_modules.recipe import RECIPE_KEY
from models import InceptionI3D, export_port_state_dict
from tests.conftest import REAL_ANNOTATIONS
from tests.test_checkpoints import bad_copies
from tests.test_recipe import Fitted, fitted  # noqa: F401 - the fixture: the fit runs once per session

ROOT = Path(__file__).resolve().parents[1]
KINETICS_LABELS = ROOT / "configs" / "labels" / "kinetics400.txt"


def same_outputs(loaded: Loaded, fitted: Fitted) -> None:
    """Every stream of ``loaded`` gives the trained module's outputs on the fixed random input."""
    reference = torch.load(fitted.reference, weights_only=True)
    streams = loaded.streams()
    assert set(streams) == set(reference["outputs"])
    with torch.no_grad():
        for name, (network, key) in streams.items():
            torch.testing.assert_close(network(reference["inputs"][key]), reference["outputs"][name], rtol=0, atol=0)


@pytest.fixture
def no_downloads(monkeypatch) -> None:
    """Any weight download fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a weight download was attempted")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.mark.slow
def test_a_checkpoint_alone_rebuilds_the_trained_module(fitted) -> None:
    loaded = load_checkpoint(fitted.checkpoint)
    assert not loaded.module.training and loaded.device == torch.device("cpu")
    assert loaded.classes == fitted.classes == loaded.recipe.classes
    assert set(loaded.input_specs) == {"rgb", "flow"} and loaded.input_specs["flow"].channels == 20
    assert loaded.recipe.flow.algorithm == "dis"
    same_outputs(loaded, fitted)


@pytest.mark.slow
def test_bad_checkpoint_files_are_one_line_naming_the_file(fitted, tmp_path) -> None:
    saved = tmp_path / "last.ckpt"
    shutil.copy(fitted.checkpoint, saved)
    files = bad_copies(saved)
    for name in ("truncated", "empty", "text", "folder", "foreign", "missing"):
        with pytest.raises(CheckpointFileError) as error:
            load_checkpoint(files[name])
        assert str(files[name]) in str(error.value) and "\n" not in str(error.value), name
    same_outputs(load_checkpoint(files["weights_only"]), fitted)  # no optimizer state: inference needs none


def without_recipe(fitted: Fitted, path: Path) -> dict:
    """The fitted checkpoint as checkpoints were before the recipe, saved at ``path``; its recipe."""
    state = torch.load(fitted.checkpoint, weights_only=True)
    recipe = state.pop(RECIPE_KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return recipe


@pytest.mark.slow
def test_an_old_checkpoint_takes_its_experiments_config_yaml_with_one_warning(fitted, tmp_path) -> None:
    without_recipe(fitted, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match="holds no recipe.*--config"):  # no config.yaml of its experiment
        load_checkpoint(tmp_path / "old.ckpt")
    # Another experiment's config.yaml never speaks for it.
    elsewhere = tmp_path / "runs" / "other" / "checkpoints" / "old.ckpt"
    without_recipe(fitted, elsewhere)
    shutil.copy(fitted.checkpoint.parent.parent / "config.yaml", elsewhere.parent.parent / "config.yaml")
    with pytest.raises(ValueError, match="no config.yaml of its experiment"):
        load_checkpoint(elsewhere)
    # In its experiment's folder: the config.yaml the CLI wrote there gives the model and the names.
    beside = fitted.checkpoint.parent / "old-without-recipe.ckpt"
    without_recipe(fitted, beside)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_checkpoint(beside)
    assert [warning.category for warning in caught if "recipe" in str(warning.message)] == [NoRecipeWarning]
    assert loaded.classes == fitted.classes
    same_outputs(loaded, fitted)


@pytest.mark.slow
def test_an_old_checkpoint_loads_with_a_config_by_class_index_with_one_warning(fitted, tmp_path) -> None:
    old = tmp_path / "old.ckpt"
    saved_recipe = without_recipe(fitted, old)
    # The dataset is here: its class names and its flow's settings, as the recipe would have said them.
    loaded = load_config(fitted.config, old)
    assert loaded.classes == fitted.classes and loaded.recipe.flow == Recipe.from_dict(saved_recipe).flow
    same_outputs(loaded, fitted)
    # The dataset is gone: scores by class index, said once; the flow's settings unknown, with why.
    config = yaml.safe_load(fitted.config.read_text())
    config["data"]["init_args"]["annotations"]["init_args"]["annotation_dir"] = str(tmp_path / "gone")
    moved = tmp_path / "moved.yaml"
    moved.write_text(yaml.safe_dump(config))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_config(moved, old)
    assert [warning.category for warning in caught if issubclass(warning.category, NoClassNamesWarning)] == [
        NoClassNamesWarning]
    assert loaded.classes is None and not loaded.recipe.flow.known and "frames_root" in loaded.recipe.flow.reason
    assert "annotation_dir" in loaded.recipe.flow.reason  # why the data could not say it
    same_outputs(loaded, fitted)


@pytest.mark.slow
def test_no_weights_are_downloaded_when_a_state_dict_replaces_them(fitted, tmp_path, no_downloads) -> None:
    state = torch.load(fitted.checkpoint, weights_only=True)
    state[RECIPE_KEY]["model"]["init_args"]["spatial"]["init_args"]["weights"] = "IMAGENET1K_V1"
    imagenet = tmp_path / "imagenet.ckpt"
    torch.save(state, imagenet)
    same_outputs(load_checkpoint(imagenet), fitted)
    config = yaml.safe_load(fitted.config.read_text())
    config["model"]["init_args"]["spatial"]["init_args"]["weights"] = "IMAGENET1K_V1"
    config_file = tmp_path / "imagenet.yaml"
    config_file.write_text(yaml.safe_dump(config))
    same_outputs(load_config(config_file, fitted.checkpoint), fitted)
    # Without a checkpoint nobody trained these classifiers: refused, before anything is fetched.
    with pytest.raises(ValueError, match=r"model.init_args.spatial and model.init_args.temporal would classify "
                                         r"with a classifier nobody trained"):
        load_config(config_file)


@pytest.mark.slow
def test_a_config_naming_other_classes_than_the_checkpoint_is_refused(fitted, tmp_path) -> None:
    config = yaml.safe_load(fitted.config.read_text())
    annotations = config["data"]["init_args"]["annotations"]["init_args"]
    renamed = tmp_path / "renamed"
    shutil.copytree(annotations["annotation_dir"], renamed)
    class_index = renamed / "classInd.txt"
    class_index.write_text(class_index.read_text().replace(fitted.classes[0], "Renamed"))
    annotations["annotation_dir"] = str(renamed)
    config_file = tmp_path / "renamed.yaml"
    config_file.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=f"first difference, checkpoint / config: '{fitted.classes[0]}' / 'Renamed'"):
        load_config(config_file, fitted.checkpoint)


def test_a_published_classifier_loads_from_its_config_with_the_kinetics_names(tmp_path, no_downloads) -> None:
    torch.manual_seed(0)
    published = InceptionI3D(num_classes=400, modality="rgb", frames=8, input_size=32)
    port = tmp_path / "rgb_kinetics.pt"
    torch.save(export_port_state_dict(published), port)
    config = yaml.safe_load((ROOT / "configs" / "i3d_rgb_kinetics400.yaml").read_text())
    network = config["model"]["init_args"]["network"]["init_args"]
    with pytest.raises(ValueError, match="model.init_args.network would classify"):  # ImageNet weights: untrained
        load_config(ROOT / "configs" / "i3d_rgb_kinetics400.yaml")
    network.update(weights=str(port), frames=8, input_size=32)
    config_file = tmp_path / "i3d.yaml"
    config_file.write_text(yaml.safe_dump(config))
    loaded = load_config(config_file)
    assert loaded.classes == KINETICS_LABELS.read_text().splitlines() and loaded.classes[0] == "abseiling"
    assert loaded.recipe.test.whole_video and loaded.recipe.test.crops == "centre" and loaded.recipe.flow is None
    clip = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module.network(clip), published.eval()(clip), rtol=0, atol=0)


def test_the_kinetics_label_map_is_the_real_class_order() -> None:
    """configs/labels/kinetics400.txt gives the class indices the Kinetics reader gives the real files."""
    val = str(REAL_ANNOTATIONS / "kinetics400" / "kinetics-400_val.csv")
    names = KINETICS_LABELS.read_text().splitlines()
    assert names == (REAL_ANNOTATIONS / "kinetics400" / "label_map_400_i3d.txt").read_text().splitlines()
    assert Kinetics(val, val, label_map=str(KINETICS_LABELS)).classes() == Kinetics(val, val).classes() == names


@pytest.mark.gpu
@pytest.mark.slow
def test_a_checkpoint_loads_onto_the_gpu(fitted) -> None:
    loaded = load_checkpoint(fitted.checkpoint, device="cuda")
    assert loaded.device.type == "cuda"
    reference = torch.load(fitted.reference, weights_only=True)
    with torch.no_grad():
        for name, (network, key) in loaded.streams().items():
            output = network(reference["inputs"][key].cuda()).cpu()
            torch.testing.assert_close(output, reference["outputs"][name], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_config_reading_videos_otherwise_than_the_checkpoint_is_refused(fitted, tmp_path) -> None:
    config = yaml.safe_load(fitted.config.read_text())
    augment = config["data"]["init_args"].setdefault("augment", {})
    stored = Recipe.from_dict(torch.load(fitted.checkpoint, weights_only=True)[RECIPE_KEY])
    augment["short_side"] = 77
    assert stored.augment.short_side != 77
    config_file = tmp_path / "resized.yaml"
    config_file.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=f"augment.short_side: checkpoint {stored.augment.short_side!r}, config 77"):
        load_config(config_file, fitted.checkpoint)
