"""Every config in configs/ runs: `python cli.py fit --config configs/X.yaml` with fast_dev_run.

The configs are the real experiments; only what a 2-core CI machine cannot afford is
overridden, the way a user would override it: dataset paths (the generated tiny
datasets), pretrained weights (none: no downloads), the networks' clip lengths and input
sizes, workers. Each config's tiny dataset comes from its annotation source's synthetic
layout (``AnnotationSource.synthetic``), so a new dataset's config runs here unlisted.
"""

import importlib
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import Callback

from cli import cli_main
from datamodules.annotations import AnnotationSource
from datamodules.synthetic.layouts import Layout
from tests.conftest import TINY, generate_with_flow

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def source_class(class_path: str) -> type[AnnotationSource]:
    """The annotation source a config's ``annotations.class_path`` names."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def config_sources(name: str) -> list[type[AnnotationSource]]:
    """The annotation sources of configs/<name>.yaml (several for a MultiDataModule)."""
    data = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["data"]
    modules = data["init_args"]["datamodules"] if data["class_path"].endswith("MultiDataModule") else [data]
    return [source_class(module["init_args"]["annotations"]["class_path"]) for module in modules]


def synthetic_layout(source: type[AnnotationSource]) -> Layout:
    if source.synthetic is None:
        pytest.fail(f"{source.__name__} declares no synthetic layout (AnnotationSource.synthetic): "
                    f"its configs cannot run on generated data")
    return source.synthetic


def tiny_dataset(source: type[AnnotationSource], folder: Path) -> tuple:
    """A tiny dataset with flow in ``source``'s synthetic layout, under ``folder``."""
    layout = synthetic_layout(source).name
    return generate_with_flow(folder / f"{layout}_tiny", layout, videos_per_class=4, **TINY)


@pytest.fixture(scope="module")
def generated() -> dict[str, tuple]:
    """Tiny datasets this module generated, by layout: one per layout for all its tests."""
    return {}


def shared_dataset(source: type[AnnotationSource], request: pytest.FixtureRequest, generated: dict[str, tuple],
                   tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """conftest's ``<layout>_tiny`` (shared with the other tests) where there is one, else
    one generated once for this module."""
    layout = synthetic_layout(source).name
    try:
        return request.getfixturevalue(f"{layout}_tiny")
    except pytest.FixtureLookupError:
        if layout not in generated:
            generated[layout] = tiny_dataset(source, tmp_path_factory.mktemp(layout))
        return generated[layout]


def dataset_for(source: type[AnnotationSource], datasets: dict[str, tuple], tmp_path: Path) -> tuple:
    """The tiny dataset of an annotation source: from ``datasets`` (keyed by the source's
    class name, or by the old ``<Name>DataModule``), else generated under ``tmp_path``."""
    for key in (source.__name__, f"{source.__name__}DataModule"):
        if key in datasets:
            return datasets[key]
    return tiny_dataset(source, tmp_path)


def dataset_settings(data, frames: Path, cache: Path, short_side: int | None) -> dict[str, dict[str, Any]]:
    """The data blocks' settings for a tiny dataset, by block."""
    return {"roots": {"video_root": str(data.video_root), "frames_root": str(frames), "cache_dir": str(cache)},
            "loader": {"num_workers": 0, "batch_size": 2, "pin_memory": False}, "test": {"positions": 2},
            "augment": {"short_side": short_side}}


def shrink_network(network: dict[str, Any]) -> int:
    """No downloads, short clips, small crops; returns the crop size the network takes (CNN-M: only 224)."""
    init = network.setdefault("init_args", {})
    if "weights" in init:
        init["weights"] = None
    if "frames" in init:
        init["frames"] = 8
    if network["class_path"].endswith("CNNM2048"):
        return 224
    init["input_size"] = 32
    return 32


def tiny_config(name: str, datasets: dict[str, tuple], tmp_path: Path) -> Path:
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    config["trainer"] = {**config["trainer"], "fast_dev_run": 1, "accelerator": "cpu", "devices": 1,
                         "default_root_dir": str(tmp_path)}
    config["trainer"].pop("logger", None)
    model = config["model"]["init_args"]
    crops = {shrink_network(model[key]) for key in ("network", "spatial", "temporal") if key in model}
    assert len(crops) == 1, f"{name}: the networks of one sample take one crop size"
    crop = crops.pop()
    data = config["data"]
    modules = data["init_args"]["datamodules"] if data["class_path"].endswith("MultiDataModule") else [data]
    for module in modules:
        assert module["class_path"] == "datamodules.VideoDataModule", f"{name}: {module['class_path']}"
        annotations = module["init_args"]["annotations"]
        source = source_class(annotations["class_path"])
        dataset, frames = dataset_for(source, datasets, tmp_path)
        annotations["init_args"].update(synthetic_layout(source).source_settings(dataset.annotation_dir))
        settings = dataset_settings(dataset, frames, tmp_path / "cache", 256 if crop == 224 else None)
        for block, values in settings.items():
            module["init_args"][block] = {**module["init_args"].get(block, {}), **values}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(path.stem for path in CONFIGS.glob("*.yaml")))
def test_config_fast_dev_run(name: str, request, generated, tmp_path_factory, tmp_path) -> None:
    datasets = {source.__name__: shared_dataset(source, request, generated, tmp_path_factory)
                for source in config_sources(name)}
    cli = cli_main(["fit", "--config", str(tiny_config(name, datasets, tmp_path))])
    assert cli.trainer.state.finished, f"{name}: fit did not finish"
    assert cli.trainer.global_step == 1


def test_missing_dataset_root_is_one_line_naming_the_setting(ucf101_tiny, tmp_path, capsys) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--data.init_args.roots.video_root", str(missing),
                  "--data.init_args.annotations.init_args.annotation_dir", str(ucf101_tiny[0].annotation_dir)])
    message = str(exit_info.value.code)
    assert "video_root" in message and str(missing) in message and "\n" not in message
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(CONFIGS / "quickstart.yaml"),
                  "--data.init_args.annotations.init_args.annotation_dir", str(missing)])
    message = str(exit_info.value.code)
    assert "annotation_dir" in message and str(missing) in message and "\n" not in message


def test_a_misspelt_data_key_is_named(ucf101_tiny, capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--data.init_args.loader.batchsize", "3"])
    assert "batchsize" in capsys.readouterr().err


BLOCKS = {"annotations", "roots", "augment", "sampling", "test", "loader"}


def test_every_config_says_the_dataset_once_and_the_input_never() -> None:
    """One DataModule with an annotation source and its settings in blocks; what the input is
    (modality, L, T, crop size) comes from the networks, so no data section says it."""
    for path in sorted(CONFIGS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())["data"]
        modules = data["init_args"]["datamodules"] if data["class_path"].endswith("MultiDataModule") else [data]
        for module in modules:
            assert module["class_path"] == "datamodules.VideoDataModule", path.name
            assert module["init_args"]["annotations"]["class_path"].startswith("datamodules.annotations."), path.name
            assert set(module["init_args"]) <= BLOCKS, f"{path.name}: {sorted(set(module['init_args']) - BLOCKS)}"
            assert "video_root" in module["init_args"]["roots"], path.name


class InterruptAfterOneStep(Callback):
    """Ctrl-C in the middle of training."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step >= 1:
            raise KeyboardInterrupt


def test_ctrl_c_leaves_a_usable_last_checkpoint(ucf101_tiny, tmp_path) -> None:
    config = yaml.safe_load(tiny_config("quickstart", {"UCF101": ucf101_tiny}, tmp_path).read_text())
    config["trainer"].pop("fast_dev_run")
    config["trainer"]["max_epochs"] = 3
    config["trainer"]["callbacks"] = [{"class_path": f"{__name__}.InterruptAfterOneStep"}]
    path = tmp_path / "interrupted.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(path)])
    saved = torch.load(tmp_path / "runs" / "interrupted" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 1
    resumed = cli_main(["fit", "--config", str(path), "--trainer.callbacks", "[]", "--ckpt_path", "last"])
    assert resumed.trainer.global_step > 1
