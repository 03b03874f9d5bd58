import subprocess
import sys
import time
from pathlib import Path

import pytest
import wandb

from lightning_modules import loggers
from jsonargparse import Namespace

from lightning_modules.loggers import (
    OfflineFallbackWandbLogger,
    host_reachable,
    log_folder_per_run,
    run_version,
    without_secrets,
)

ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "local-" + "0123456789abcdef" * 3  # a well-formed key for no server


def run_file(save_dir: Path) -> bytes:
    """The offline run's records, once wandb's service has written them out (at teardown)."""
    wandb.teardown()
    (run,) = save_dir.glob("wandb/offline-run-*/run-*.wandb")
    return run.read_bytes()


def test_no_key_logs_offline_without_blocking(wandb_env, tmp_path):
    start = time.monotonic()
    logger = OfflineFallbackWandbLogger(save_dir=tmp_path, project="tests")
    with pytest.warns(UserWarning, match="wandb_api_key, optim.auth_token"):
        logger.log_hyperparams({"lr": 0.01, "wandb_api_key": "abc", "optim": {"auth_token": "t", "momentum": 0.9}})
    logger.log_metrics({"train/loss": 1.5}, step=0)
    logger.experiment.finish()
    assert time.monotonic() - start < 30  # wandb's service process starts in ~5-10 s on 2 busy cores

    (notice,) = wandb_env
    run_dir = next(tmp_path.glob("wandb/offline-run-*"))
    assert "\n" not in notice and "no API key found" in notice and f"wandb sync {run_dir}" in notice
    records = run_file(tmp_path)  # protobuf records: the names appear as they are
    assert b"train/loss" in records and b"momentum" in records and b"optim" in records
    assert b"api_key" not in records and b"auth_token" not in records


def test_offline_or_disabled_on_request_without_notice(wandb_env, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = OfflineFallbackWandbLogger(save_dir=tmp_path)
    logger.log_metrics({"a": 1.0}, step=0)
    assert logger.experiment.disabled and not list(tmp_path.glob("wandb/*run-*"))
    logger.experiment.finish()
    wandb.teardown()

    monkeypatch.delenv("WANDB_MODE")
    logger = OfflineFallbackWandbLogger(save_dir=tmp_path, offline=True)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.experiment.finish()
    assert list(tmp_path.glob("wandb/offline-run-*")) and not wandb_env


def test_key_but_unreachable_host_goes_offline(wandb_env, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setattr(loggers, "host_reachable", lambda url: False)
    wandb.teardown()
    logger = OfflineFallbackWandbLogger(save_dir=tmp_path)
    with pytest.warns(UserWarning, match="note"):  # a key pasted into an innocent field
        logger.log_hyperparams({"note": FAKE_KEY, "lr": 0.1})
    logger.experiment.finish()
    (notice,) = wandb_env
    assert "127.0.0.1 unreachable" in notice
    assert FAKE_KEY.encode() not in run_file(tmp_path)


def test_host_reachable_is_quick_on_a_closed_port():
    start = time.monotonic()
    assert not host_reachable("http://127.0.0.1:9", timeout=1.0)
    assert time.monotonic() - start < 2


def test_without_secrets(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cret")
    params = {"password": "p", "data": {"keys": ["rgb", "s3cret"], "root": "s3cret", "stream_key": "rgb"}}
    kept, dropped = without_secrets(params)
    assert kept == {"data": {"keys": ["rgb"], "stream_key": "rgb"}}
    assert dropped == ["password", "data.keys.1", "data.root"]


def csv_logger(save_dir: Path, **init_args) -> Namespace:
    return Namespace(class_path="pytorch_lightning.loggers.CSVLogger",
                     init_args=Namespace(save_dir=str(save_dir), name="exp", version=None, **init_args))


def test_every_run_gets_a_log_folder_of_its_own(tmp_path):
    started = time.mktime((2026, 12, 6, 8, 15, 0, 0, 0, -1))
    assert run_version(tmp_path, "fit", started) == "fit-20261206-081500"
    assert (tmp_path / "fit-20261206-081500").is_dir()  # reserved
    (tmp_path / "fit-20261206-081500-2").mkdir()
    assert run_version(tmp_path, "fit", started, reserve=False) == "fit-20261206-081500-3"
    assert run_version(tmp_path, "fit", started) == "fit-20261206-081500-3"
    assert run_version(tmp_path, "test", started) == "test-20261206-081500"

    loggers = [csv_logger(tmp_path), Namespace(class_path="pytorch_lightning.loggers.TensorBoardLogger",
                                               init_args=Namespace(save_dir=str(tmp_path), name="", version=None))]
    log_folder_per_run(loggers, "test")
    assert [entry.init_args.version.split("-")[0] for entry in loggers] == ["test", "test"]
    same_folder = [csv_logger(tmp_path), csv_logger(tmp_path)]
    log_folder_per_run(same_folder, "fit")
    assert same_folder[0].init_args.version == same_folder[1].init_args.version
    log_folder_per_run(True, "fit")  # Lightning's default logger numbers its versions itself


def test_a_version_set_in_the_config_never_overwrites_logs(tmp_path):
    logger = csv_logger(tmp_path)
    logger.init_args.version = "run"
    log_folder_per_run(logger, "fit")  # nothing there yet: kept
    assert logger.init_args.version == "run"
    (tmp_path / "exp" / "run").mkdir(parents=True)
    (tmp_path / "exp" / "run" / "metrics.csv").write_text("epoch,step\n0,1\n")
    with pytest.raises(ValueError, match=r"trainer.logger.init_args.version: .*exp/run holds an earlier run's logs"):
        log_folder_per_run(logger, "test")


def test_jobs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    """Real processes racing for one run name (two fits started together on one experiment
    shared a folder, and Lightning's CSV writers then rewrote each other's metrics.csv)."""
    started = time.mktime((2026, 12, 6, 8, 15, 0, 0, 0, -1))
    code = ("import sys, time; from pathlib import Path; from lightning_modules.loggers import run_version; "
            "time.sleep(max(0.0, float(sys.argv[1]) - time.time())); "
            f"print(run_version(Path(sys.argv[2]), 'fit', {started}))")
    go = time.time() + 3.0
    processes = [subprocess.Popen([sys.executable, "-c", code, str(go), str(tmp_path)], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True) for _ in range(6)]
    names = [process.communicate(timeout=120)[0].strip() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert sorted(names) == sorted(["fit-20261206-081500"] + [f"fit-20261206-081500-{n}" for n in range(2, 7)])
