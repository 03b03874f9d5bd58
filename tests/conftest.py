"""Tiny generated datasets shared by the end-to-end tests: real videos, real flow."""

from pathlib import Path

import cv2
import pytest
import torch
import wandb

from datamodules.synthetic import SyntheticDataset, generate
from flow.extract import ExtractionConfig, extract_many
from lightning_modules import loggers as loggers_module

NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``gpu``-marked test where CUDA is absent, with the reason (``-ra`` lists it)."""
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.skip(reason=NO_CUDA))


def generate_with_flow(root: Path, layout: str, **kwargs) -> tuple[SyntheticDataset, Path]:
    """A tiny synthetic dataset and its DIS flow (at the videos' size) under ``root/flow``."""
    data = generate(root / layout, layout, **kwargs)
    videos = [str(path.relative_to(data.video_root)) for path in data.videos]
    summary = extract_many(data.video_root, videos, root / "flow", ExtractionConfig(algorithm="dis", short_side=0),
                           progress=False)
    assert summary.failed == 0
    return data, root / "flow"


def real_annotations() -> Path:
    """The real annotation files of UCF-101, HMDB-51 and Kinetics-400: ``shared/`` beside
    the checkout (as CI lays it out), else this workplace's copy."""
    for candidate in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")):
        if (candidate / "data" / "annotations").is_dir():
            return candidate / "data" / "annotations"
    raise FileNotFoundError("shared/data/annotations not found beside the checkout")


REAL_ANNOTATIONS = real_annotations()

TINY = {"num_classes": 4, "num_frames": 12, "size": (64, 48)}


@pytest.fixture(scope="session")
def ucf101_tiny(tmp_path_factory) -> tuple[SyntheticDataset, Path]:
    return generate_with_flow(tmp_path_factory.mktemp("ucf101"), "ucf101", videos_per_class=4, **TINY)


@pytest.fixture(scope="session")
def hmdb51_tiny(tmp_path_factory) -> tuple[SyntheticDataset, Path]:
    return generate_with_flow(tmp_path_factory.mktemp("hmdb51"), "hmdb51", videos_per_class=4, **TINY)


@pytest.fixture(scope="session")
def kinetics_tiny(tmp_path_factory) -> tuple[SyntheticDataset, Path]:
    return generate_with_flow(tmp_path_factory.mktemp("kinetics"), "kinetics", videos_per_class=4, **TINY)


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """No credentials, every wandb path under tmp_path, and a server address on loopback, so
    that nothing in these tests can reach wandb.ai. Returns the notices the logger prints."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_SILENT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(loggers_module, "host_reachable", lambda url: pytest.fail("no key: nothing to connect to"))
    notices: list[str] = []
    monkeypatch.setattr(loggers_module, "rank_zero_info", notices.append)
    wandb.teardown()  # forget settings read under another environment
    yield notices
    wandb.finish()
    wandb.teardown()


@pytest.fixture
def opencv_three_threads():
    """OpenCV at 3 threads, a count nothing sets by itself, so a test sees what changed it."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    yield 3
    cv2.setNumThreads(before)


def finished(dataset, i: int) -> dict:
    """Item ``i`` of a VideoDataset as the network sees it: collated alone and finished as the
    datamodules' ``on_after_batch_transfer`` does (test keys as all their views, (V, ...))."""
    from torch.utils.data import default_collate

    from datamodules.batch import TestViews, collate_test

    batch = dataset.finish((collate_test if dataset.stage == "test" else default_collate)([dataset[i]]))
    return {key: (value.materialise() if isinstance(value, TestViews) else value)[0] for key, value in batch.items()}
