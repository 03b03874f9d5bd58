"""Tiny generated datasets shared by the end-to-end tests: real videos, real flow."""

from pathlib import Path

import pytest

from datamodules.synthetic import SyntheticDataset, generate
from flow.extract import ExtractionConfig, extract_many


def generate_with_flow(root: Path, layout: str, **kwargs) -> tuple[SyntheticDataset, Path]:
    """A tiny synthetic dataset and its DIS flow (at the videos' size) under ``root/flow``."""
    data = generate(root / layout, layout, **kwargs)
    videos = [str(path.relative_to(data.video_root)) for path in data.videos]
    summary = extract_many(data.video_root, videos, root / "flow", ExtractionConfig(algorithm="dis", short_side=0),
                           progress=False)
    assert summary.failed == 0
    return data, root / "flow"


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
