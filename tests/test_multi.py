"""MultiDataModule: UCF-101 + HMDB-51 feeding one network, samples tagged with their dataset."""

import pytest
import torch

from datamodules import HMDB51DataModule, MultiDataModule, UCF101DataModule, generate
from flow.extract import ExtractionConfig, extract_many


def with_flow(root, layout, num_classes):
    data = generate(root / layout, layout, num_classes=num_classes, videos_per_class=4, num_frames=12, size=(64, 48))
    videos = [str(path.relative_to(data.video_root)) for path in data.videos]
    assert extract_many(data.video_root, videos, root / f"{layout}_flow", ExtractionConfig(algorithm="dis", short_side=0),
                        progress=False).failed == 0
    return data


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    ucf, hmdb = with_flow(root, "ucf101", 4), with_flow(root, "hmdb51", 3)
    shared = {"modality": "flow", "num_fields": 4, "crop_size": 32, "short_side": None, "test_positions": 2,
              "batch_size": 4, "num_workers": 0, "pin_memory": False, "cache_dir": str(root / "cache"), "seed": 0}
    return MultiDataModule([
        UCF101DataModule(annotation_dir=str(ucf.annotation_dir), video_root=str(ucf.video_root),
                         frames_root=str(root / "ucf101_flow"), **shared),
        HMDB51DataModule(split_dir=str(hmdb.annotation_dir), video_root=str(hmdb.video_root),
                         frames_root=str(root / "hmdb51_flow"), **shared),
    ])


def test_num_classes_per_dataset_in_head_order(multi):
    assert multi.num_classes == [4, 3]


def test_training_batches_mix_datasets_and_tag_each_sample(multi):
    multi.prepare_data()
    multi.setup("fit")
    batches = list(multi.train_dataloader())
    tags = torch.cat([batch["dataset"] for batch in batches])
    sizes = [len(dataset) for dataset in multi.datasets["train"]]
    assert len(tags) == sum(sizes) // 4 * 4 and set(tags.tolist()) == {0, 1}
    assert batches[0]["flow"].shape == (4, 8, 32, 32)
    for batch in batches:  # labels stay within their own dataset's classes
        assert all(label < multi.num_classes[tag] for label, tag in zip(batch["label"], batch["dataset"]))


def test_evaluation_has_one_loader_per_dataset(multi):
    val, test = multi.val_dataloader(), multi.test_dataloader()
    assert len(val) == len(test) == 2
    for tag, loader in enumerate(test):
        batch = next(iter(loader))
        assert batch["dataset"].tolist() == [tag] and batch["flow"].shape == (1, 20, 8, 32, 32)
    assert next(iter(val[1]))["dataset"].unique().tolist() == [1]


def test_datasets_must_share_the_modality(multi):
    first, second = multi.datamodules
    second.modality = "rgb"
    try:
        with pytest.raises(ValueError, match="share one modality"):
            MultiDataModule([first, second])
    finally:
        second.modality = "flow"
