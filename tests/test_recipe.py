"""A checkpoint written by ``fit`` carries its recipe (``lightning_modules.recipe``), read back
as ``inference.recipe.Recipe``: the model's config, the class names, the test data settings
and the settings the training flow was extracted with (a training video's meta.json)."""

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from cli import cli_main
from datamodules.annotations import UCF101
from flow.extraction_config import ExtractionConfig
from flow.meta import META_FILE, read_meta
from inference.recipe import FlowSettings, FlowUnknownError, Recipe
from lightning_modules.recipe import RECIPE_KEY, RECIPE_VERSION, data_recipe, flow_recipe
from tests.conftest import video_datamodule
from tests.test_cli import experiment_config


@dataclass(frozen=True)
class Fitted:
    """The quickstart (two streams: RGB and flow) fitted for two steps on the tiny UCF-101."""

    config: Path
    checkpoint: Path
    reference: Path  # the trained module's outputs on a fixed input: {"inputs": {key: x}, "outputs": {stream: y}}
    classes: list[str]
    flow_root: Path


def fit_once(data, flow_root: Path, folder: Path) -> Fitted:
    """Fit once per session, whichever test module asks first (pytest imports this file twice
    when another test file imports from it, so the finished fit is recognised on disk). The
    tests that read it are ``slow``: a fit of two ResNet-18 streams takes several seconds."""
    reference = folder / "reference.pt"
    config = folder / "quickstart.yaml"
    if not reference.exists():
        folder.mkdir(parents=True, exist_ok=True)
        config = experiment_config("quickstart", {"UCF101DataModule": (data, flow_root)}, folder, max_epochs=1,
                                   limit_train_batches=2, limit_val_batches=2, num_sanity_val_steps=0)
        module = cli_main(["fit", "--config", str(config)]).model.eval()
        generator = torch.Generator().manual_seed(0)
        inputs = {key: torch.randn(2, spec.channels, spec.size, spec.size, generator=generator)
                  for key, spec in module.input_specs.items()}
        with torch.no_grad():
            outputs = {name: module.stream_network(name)(inputs[key]) for name, (_, key) in module.streams.items()}
        torch.save({"inputs": inputs, "outputs": outputs}, reference)
    return Fitted(config, folder / "runs" / "quickstart" / "checkpoints" / "last.ckpt", reference,
                  UCF101(str(data.annotation_dir)).classes(), flow_root)


@pytest.fixture(scope="session")
def fitted(ucf101_tiny, tmp_path_factory) -> Fitted:
    return fit_once(*ucf101_tiny, tmp_path_factory.getbasetemp() / "recipe_fit")


@pytest.mark.slow
def test_a_fit_writes_the_recipe_in_plain_values(fitted) -> None:
    recipe = torch.load(fitted.checkpoint, map_location="cpu", weights_only=True)[RECIPE_KEY]
    assert recipe["version"] == RECIPE_VERSION
    assert recipe["classes"] == fitted.classes
    model = recipe["model"]
    assert model["class_path"] == "lightning_modules.TwoStreamClassifier"
    assert model["init_args"]["num_classes"] == len(fitted.classes)
    assert "optimizer" not in model["init_args"] and "scheduler" not in model["init_args"]
    assert model["init_args"]["temporal"]["init_args"]["in_channels"] == 20
    # The test as it ran: 2 positions (the tiny config), ten crops (the 2D default, resolved).
    assert recipe["data"]["test"]["positions"] == 2 and recipe["data"]["test"]["crops"] == "ten"
    assert recipe["data"]["augment"]["flow_mean_subtraction"] is False


@pytest.mark.slow
def test_the_recipe_holds_the_training_flows_extraction_settings(fitted) -> None:
    recipe = Recipe.from_dict(torch.load(fitted.checkpoint, map_location="cpu", weights_only=True)[RECIPE_KEY])
    meta = read_meta(next(path.parent for path in sorted(fitted.flow_root.rglob(META_FILE))))
    assert recipe.flow == FlowSettings(algorithm="dis", params=meta.params, bound=meta.bound,
                                       jpeg_quality=meta.jpeg_quality, step=meta.step, backward=meta.backward,
                                       decoder="pyav", short_side=min(meta.width, meta.height), layout=meta.layout,
                                       start_index=meta.start_index)
    # conftest extracts DIS at the videos' size (64x48): the short side inference must resize to is 48.
    config = recipe.flow.extraction_config()
    assert config == ExtractionConfig(algorithm="dis", params=meta.params, short_side=48, bound=meta.bound,
                                      quality=meta.jpeg_quality, decoder="pyav", layout=meta.frame_layout())
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert recipe.classes == fitted.classes and recipe.test.crops == "ten"


def test_flow_without_meta_json_is_recorded_with_its_reason(ucf101_tiny, tmp_path) -> None:
    data, flow = ucf101_tiny
    foreign = tmp_path / "flow"
    shutil.copytree(flow, foreign)
    for meta in foreign.rglob(META_FILE):  # as denseflow leaves its folders
        meta.unlink()
    dm = video_datamodule(UCF101(str(data.annotation_dir)), "flow", video_root=str(data.video_root),
                          frames_root=str(foreign), cache_dir=str(tmp_path / "cache"), crop_size=32)
    flow = data_recipe(dm)["flow"]
    assert flow["algorithm"] is None and "no meta.json" in flow["reason"] and str(foreign) in flow["reason"]
    settings = FlowSettings.from_dict(flow)
    with pytest.raises(FlowUnknownError, match="no meta.json"):
        settings.extraction_config()


def test_an_rgb_model_has_no_flow_settings_and_names_its_classes(ucf101_tiny, tmp_path) -> None:
    data, flow = ucf101_tiny
    dm = video_datamodule(UCF101(str(data.annotation_dir)), "rgb", video_root=str(data.video_root),
                          frames_root=str(flow), cache_dir=str(tmp_path / "cache"), crop_size=32)
    recipe = data_recipe(dm)
    assert recipe["flow"] is None and recipe["classes"] == dm.classes


def test_a_newer_or_malformed_recipe_is_refused_in_one_line() -> None:
    recipe = Recipe(model={"class_path": "lightning_modules.VideoClassifier", "init_args": {}},
                    flow=FlowSettings.from_dict(flow_recipe(None, "another tool's flow")))
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    with pytest.raises(ValueError, match=f"recipe version {RECIPE_VERSION + 1}"):
        Recipe.from_dict({**recipe.to_dict(), "version": RECIPE_VERSION + 1})
    with pytest.raises(ValueError, match="no model config"):
        Recipe.from_dict({**recipe.to_dict(), "model": None})
    with pytest.raises(ValueError, match="data blocks"):
        Recipe.from_dict({**recipe.to_dict(), "data": {"test": {"no_such_setting": 1}}})
    assert replace(recipe, classes=["a"]).to_dict()["classes"] == ["a"]


def test_flow_whose_meta_json_names_no_decoder_was_decoded_by_decord() -> None:
    """meta.json began recording the decoder when PyAV became the extractor's default."""
    settings = FlowSettings(algorithm="tvl1", bound=20.0, jpeg_quality=95, short_side=256)
    assert settings.extraction_config().decoder == "decord"
    assert replace(settings, decoder="pyav").extraction_config(threads=2).threads == 2
    with pytest.raises(ValueError, match="unknown decoder"):
        replace(settings, decoder="nvdec").extraction_config()
