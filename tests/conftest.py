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


def generate_with_flow(root: Path, layout: str, backward: bool = False, **kwargs) -> tuple[SyntheticDataset, Path]:
    """A tiny synthetic dataset and its DIS flow (at the videos' size; ``backward``: both ways) under ``root/flow``."""
    data = generate(root / layout, layout, **kwargs)
    videos = [str(path.relative_to(data.video_root)) for path in data.videos]
    summary = extract_many(data.video_root, videos, root / "flow",
                           ExtractionConfig(algorithm="dis", short_side=0, backward=backward), progress=False)
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

    from datamodules.batch import collate_test
    from datamodules.test_views import TestViews

    batch = dataset.finish((collate_test if dataset.stage == "test" else default_collate)([dataset[i]]))
    return {key: (value.materialise() if isinstance(value, TestViews) else value)[0] for key, value in batch.items()}


# A VideoDataModule setting -> (its block, its name there): tests of the data path say their
# settings flat; a network's specs stand in for the model (datamodules.modality.paper_specs).
BLOCK_OF = {
    "video_root": ("roots", "video_root"), "frames_root": ("roots", "frames_root"),
    "flow_layout": ("roots", "flow_layout"), "cache_dir": ("roots", "cache_dir"),
    "short_side": ("augment", "short_side"), "multiscale_crop": ("augment", "multiscale_crop"),
    "flip": ("augment", "flip"), "flow_mean_subtraction": ("augment", "flow_mean_subtraction"),
    "stride": ("sampling", "stride"), "bidirectional_flow": ("sampling", "bidirectional_flow"),
    "clips_per_video": ("sampling", "clips_per_video"), "stacking": ("sampling", "stacking"),
    "test_positions": ("test", "positions"), "test_crops": ("test", "crops"), "test_clips": ("test", "clips"),
    "whole_video_test": ("test", "whole_video"), "svm_positions": ("test", "svm_positions"),
    "svm_crops": ("test", "svm_crops"),
    **{name: ("loader", name) for name in ("batch_size", "test_batch_size", "num_workers", "pin_memory",
                                           "persistent_workers", "decoder", "seed", "max_failure_rate")},
}


def video_datamodule(annotations, modality: str | None = None, num_fields: int = 10, frames: int = 64,
                     crop_size: int = 224, **settings):
    """A ``VideoDataModule`` from flat settings (``BLOCK_OF``), given the papers' InputSpecs for
    ``modality`` (L=``num_fields``, T=``frames``, ``crop_size``) as a network would give its own."""
    from datamodules import Augmentation, EvalProtocol, FrameSampling, LoaderSettings, Roots, VideoDataModule
    from datamodules.modality import paper_specs

    blocks: dict[str, dict] = {}
    for name, value in settings.items():
        block, key = BLOCK_OF[name]
        blocks.setdefault(block, {})[key] = value
    parts = {"augment": Augmentation, "sampling": FrameSampling, "test": EvalProtocol, "loader": LoaderSettings}
    dm = VideoDataModule(annotations, Roots(**blocks.pop("roots")),
                         **{block: parts[block](**values) for block, values in blocks.items()})
    if modality is not None:
        dm.set_input_specs(paper_specs(modality, num_fields, frames, crop_size))
    return dm
