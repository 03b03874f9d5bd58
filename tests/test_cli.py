"""The command line across processes: an experiment's checkpoints live in a folder derived
from its config, ``--ckpt_path last|best`` finds them in a new process (also under W&B),
and validate/test/predict refuse networks nobody trained.

Configs are the real ones shrunk as tests/test_configs.py does (tiny generated data, no
downloads, short clips), training for a couple of steps instead of fast_dev_run (which
writes no checkpoint).
"""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import yaml

from cli import cli_main
from lightning_modules.classifier import VideoClassifier
from models import InceptionI3D, ResNetStream, export_port_state_dict
from tests.test_configs import CONFIGS, tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def datasets(ucf101_tiny, hmdb51_tiny, kinetics_tiny) -> dict[str, tuple]:
    return {"UCF101DataModule": ucf101_tiny, "HMDB51DataModule": hmdb51_tiny, "KineticsDataModule": kinetics_tiny}


def experiment_config(name: str, datasets: dict[str, tuple], folder: Path, **trainer: Any) -> Path:
    """``configs/<name>.yaml`` shrunk, training ``trainer``'s steps, logging with its own logger
    (W&B for the real configs) under ``folder/runs``; named as the original, so its experiment is ``name``."""
    path = tiny_config(name, datasets, folder)
    config = yaml.safe_load(path.read_text())
    logger = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["trainer"]["logger"]
    logger["init_args"]["save_dir"] = str(folder / "runs")
    config["trainer"].pop("fast_dev_run")
    config["trainer"].update({"logger": logger, "enable_progress_bar": False, "enable_model_summary": False,
                              "max_epochs": 2, "limit_train_batches": 1, "limit_val_batches": 1,
                              "limit_test_batches": 1, "limit_predict_batches": 1, **trainer})
    path.write_text(yaml.safe_dump(config))
    return path


def checkpoint_folders(cli) -> set[Path]:
    return {Path(callback.dirpath) for callback in cli.trainer.checkpoint_callbacks}


def refusal(args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code not in (0, None)
    return str(exit_info.value.code)


# Where checkpoints go.

@pytest.mark.parametrize("name", sorted(path.stem for path in CONFIGS.glob("*.yaml")))
def test_every_config_keeps_its_checkpoints_in_its_experiment_folder(name, datasets, tmp_path) -> None:
    cli = cli_main(["--config", str(tiny_config(name, datasets, tmp_path))], run=False)
    assert checkpoint_folders(cli) == {tmp_path.resolve() / "runs" / name / "checkpoints"}


def test_the_experiment_is_named_on_the_command_line_or_its_folder_set(datasets, tmp_path) -> None:
    config = str(tiny_config("quickstart", datasets, tmp_path))
    named = cli_main(["--config", config, "--experiment", "lr_0.1"], run=False)
    assert checkpoint_folders(named) == {tmp_path.resolve() / "runs" / "lr_0.1" / "checkpoints"}
    elsewhere = cli_main(["--config", config, "--checkpoint.dirpath", str(tmp_path / "mine")], run=False)
    assert checkpoint_folders(elsewhere) == {tmp_path.resolve() / "mine"}
    # Which of two files names the experiment is anyone's guess: say it.
    message = refusal(["fit", "--config", config, "--config", config])
    assert "2 config files" in message and "--experiment" in message
    both = cli_main(["--config", config, "--config", config, "--experiment", "both"], run=False)
    assert checkpoint_folders(both) == {tmp_path.resolve() / "runs" / "both" / "checkpoints"}


# --ckpt_path last and best from a new process.

@pytest.fixture(scope="module")
def fitted_quickstart(ucf101_tiny, tmp_path_factory) -> tuple[Path, str]:
    """The quickstart experiment fitted for 2 epochs (a CSV logger): its folder and config."""
    folder = tmp_path_factory.mktemp("quickstart")
    config = str(experiment_config("quickstart", {"UCF101DataModule": ucf101_tiny}, folder))
    cli_main(["fit", "--config", config])
    return folder, config


@pytest.mark.slow
def test_test_in_a_new_call_loads_last_and_best(fitted_quickstart) -> None:
    folder, config = fitted_quickstart
    checkpoints = folder.resolve() / "runs" / "quickstart" / "checkpoints"
    last = cli_main(["test", "--config", config, "--ckpt_path", "last"])
    assert Path(last.trainer.ckpt_path) == checkpoints / "last.ckpt"
    saved = torch.load(checkpoints / "last.ckpt", weights_only=True)["state_dict"]
    torch.testing.assert_close(last.model.temporal.fc.weight, saved["temporal.fc.weight"])
    assert "test/fusion_avg/acc" in last.trainer.logged_metrics
    best = cli_main(["test", "--config", config, "--ckpt_path", "best"])
    (best_file,) = checkpoints.glob("epoch*-acc*.ckpt")
    assert Path(best.trainer.ckpt_path) == best_file


@pytest.mark.slow
def test_scores_go_to_the_testing_experiments_folder(fitted_quickstart) -> None:
    """Also when --ckpt_path is a file, whose saved hyper-parameters Lightning lays over the
    config: nothing saved at fit time may send the scores to the fit's folder."""
    folder, config = fitted_quickstart
    last = folder.resolve() / "runs" / "quickstart" / "checkpoints" / "last.ckpt"
    cli_main(["test", "--config", config, "--ckpt_path", str(last), "--experiment", "retested"])
    assert (folder / "runs" / "retested" / "test_scores.npz").is_file()
    assert (folder / "runs" / "retested" / "test_scores_svm_train.npz").is_file()


@pytest.mark.slow
def test_cli_exit_status_in_a_real_process(fitted_quickstart) -> None:
    folder, config = fitted_quickstart

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args, "--config", config], cwd=folder,
                              capture_output=True, text=True, timeout=600)

    tested = cli("test", "--ckpt_path", "last")
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert "fusion by averaging" in tested.stdout
    refused = cli("test")
    assert refused.returncode != 0
    assert "refusing to test" in refused.stderr and "the spatial stream (ResNetStream)" in refused.stderr


def test_last_and_best_that_do_not_exist_name_the_folder(datasets, tmp_path) -> None:
    config = str(tiny_config("quickstart", datasets, tmp_path))
    folder = tmp_path.resolve() / "runs" / "quickstart" / "checkpoints"
    for which in ("last", "best"):
        message = refusal(["test", "--config", config, "--ckpt_path", which])
        assert f"--ckpt_path {which}" in message and f"is not in {folder}, which does not exist" in message


@pytest.mark.slow
def test_last_checkpoint_every_epoch_even_between_validations(datasets, tmp_path) -> None:
    config = str(experiment_config("quickstart", datasets, tmp_path, max_epochs=1, check_val_every_n_epoch=2))
    cli_main(["fit", "--config", config])
    assert (tmp_path / "runs" / "quickstart" / "checkpoints" / "last.ckpt").is_file()
    assert "records none by 'val/acc'" in refusal(["test", "--config", config, "--ckpt_path", "best"])


@pytest.mark.slow
def test_under_wandb_a_new_process_finds_the_best_checkpoint(datasets, wandb_env, tmp_path) -> None:
    config = str(experiment_config("i3d_rgb_kinetics400", datasets, tmp_path))
    fitted = cli_main(["fit", "--config", config])
    assert any("logging offline" in notice for notice in wandb_env)
    fitted.trainer.logger.experiment.finish()
    tested = cli_main(["test", "--config", config, "--ckpt_path", "best"])
    checkpoints = tmp_path.resolve() / "runs" / "i3d_rgb_kinetics400" / "checkpoints"
    assert Path(tested.trainer.ckpt_path).parent == checkpoints
    assert Path(tested.trainer.ckpt_path).name.startswith("epoch")
    # Nothing in W&B's per-run folders: every checkpoint is in the experiment's.
    assert {path.parent for path in tmp_path.resolve().rglob("*.ckpt")} == {checkpoints}
    # Scores and config in the experiment's folder too: W&B's log_dir is runs/ itself, where
    # every experiment's test_scores.npz would overwrite the previous one's.
    assert {path.parent for path in tmp_path.resolve().rglob("test_scores*.npz")} == {checkpoints.parent}
    assert {path.parent for path in tmp_path.resolve().rglob("config.yaml")} == {checkpoints.parent}
    tested.trainer.logger.experiment.finish()
    # The fit's and the test's logs: a run each, with ids of their own.
    assert len({path.name.rsplit("-", 1)[1] for path in tmp_path.rglob("offline-run-*")}) == 2


# No numbers from networks nobody trained.

@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_evaluating_random_networks_is_refused_before_anything_runs(stage, datasets, tmp_path) -> None:
    config = str(experiment_config("quickstart", datasets, tmp_path))
    message = refusal([stage, "--config", config])
    assert f"refusing to {stage}" in message and "--ckpt_path" in message
    assert "the spatial stream (ResNetStream) and the temporal stream (ResNetStream) were" in message
    assert not (tmp_path / "runs").exists(), "refused after the run had started"


@pytest.mark.parametrize("file_classes", [4, 7])
def test_i3d_weights_are_where_training_starts_not_a_tested_network(file_classes, datasets, tmp_path) -> None:
    """A network's own ``weights=`` (a DeepMind Kinetics file, on the data's 4 classes or not)
    start a training (lightning_modules.provenance); a test needs a checkpoint."""
    weights = tmp_path / f"rgb_{file_classes}.pt"
    torch.save(export_port_state_dict(InceptionI3D(file_classes)), weights)
    args = ["test", "--config", str(tiny_config("i3d_rgb_kinetics400", datasets, tmp_path)),
            "--model.init_args.network.init_args.weights", str(weights)]
    assert "the rgb stream (InceptionI3D) was" in refusal(args)


def stream_checkpoint(path: Path, network: torch.nn.Module) -> str:
    """A VideoClassifier checkpoint, as training a stream alone writes it."""
    trainer = pl.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(VideoClassifier(lambda num_classes: network, 4))
    trainer.save_checkpoint(path)
    return str(path)


@pytest.mark.slow
def test_streams_trained_apart_test_without_a_checkpoint(datasets, tmp_path) -> None:
    spatial = stream_checkpoint(tmp_path / "spatial.ckpt", ResNetStream(4, depth=18))
    temporal = stream_checkpoint(tmp_path / "temporal.ckpt", ResNetStream(4, depth=18, modality="flow", in_channels=20))
    args = ["test", "--config", str(tiny_config("quickstart", datasets, tmp_path)),
            "--model.init_args.spatial_checkpoint", spatial]
    assert "the temporal stream (ResNetStream) was" in refusal(args)
    tested = cli_main([*args, "--model.init_args.temporal_checkpoint", temporal])
    assert "test/fusion_avg/acc" in tested.trainer.logged_metrics


@pytest.mark.parametrize(("accelerator", "cuda", "bf16", "expected"), [
    ("cpu", True, True, "32-true"),  # the quickstart on a GPU machine stays fp32
    ("auto", False, False, "32-true"),
    ("auto", True, True, "bf16-mixed"),
    ("gpu", True, True, "bf16-mixed"),
    ("cuda", True, False, "16-mixed"),  # pre-Ampere GPUs have no bf16
])
def test_default_precision_follows_the_accelerator_asked_for(accelerator, cuda, bf16, expected) -> None:
    from cli import default_precision

    assert default_precision(accelerator, cuda=cuda, bf16=bf16) == expected


def test_cpu_config_runs_fp32_on_a_gpu_machine(datasets, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = experiment_config("quickstart", datasets, tmp_path)
    cli = cli_main(["--config", str(config)], run=False)
    assert cli.trainer.precision == "32-true"
    explicit = cli_main(["--config", str(config), "--trainer.precision", "bf16-mixed"], run=False)
    assert explicit.trainer.precision == "bf16-mixed"
