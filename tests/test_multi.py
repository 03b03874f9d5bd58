"""MultiDataModule: UCF-101 + HMDB-51 feeding one network, samples tagged with their dataset."""

from dataclasses import replace

import pytest
import torch

from datamodules import (
    Augmentation,
    EvalProtocol,
    LoaderSettings,
    MultiDataModule,
    Roots,
    VideoDataModule,
    generate,
)
from datamodules.annotations import HMDB51, UCF101
from datamodules.modality import paper_specs
from flow.extract import ExtractionConfig, extract_many

FLOW = paper_specs("flow", num_fields=4, size=32)  # what the one network reads


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
    shared = {"augment": Augmentation(short_side=None), "test": EvalProtocol(positions=2),
              "loader": LoaderSettings(batch_size=4, num_workers=0, pin_memory=False, seed=0)}
    multi = MultiDataModule([
        VideoDataModule(UCF101(str(ucf.annotation_dir)),
                        Roots(str(ucf.video_root), str(root / "ucf101_flow"), cache_dir=str(root / "cache")), **shared),
        VideoDataModule(HMDB51(str(hmdb.annotation_dir)),
                        Roots(str(hmdb.video_root), str(root / "hmdb51_flow"), cache_dir=str(root / "cache")), **shared),
    ])
    multi.set_input_specs(FLOW)
    return multi


def test_num_classes_per_dataset_in_head_order(multi):
    assert multi.num_classes == [4, 3]


def test_training_batches_mix_datasets_and_tag_each_sample(multi):
    multi.prepare_data()
    multi.setup("fit")
    batches = list(multi.train_dataloader())
    tags = torch.cat([batch["dataset"] for batch in batches])
    sizes = [len(dataset) for dataset in multi.datasets["train"]]
    assert len(tags) == sum(sizes) // 4 * 4 and set(tags.tolist()) == {0, 1}
    assert batches[0]["flow"].dtype == torch.uint8  # finished on the device
    assert multi.on_after_batch_transfer(batches[0], 0)["flow"].shape == (4, 8, 32, 32)
    for batch in batches:  # labels stay within their own dataset's classes
        assert all(label < multi.num_classes[tag] for label, tag in zip(batch["label"], batch["dataset"]))


def test_evaluation_is_one_loader_in_dataset_order(multi):
    """One loader (no dataloader_idx): every video of each dataset once, datasets in head order."""
    for loader, split in ((multi.val_dataloader(), "val"), (multi.test_dataloader(), "test")):
        batches = list(loader)
        seen = [(tag, index) for batch in batches
                for tag, index in zip(batch["dataset"].tolist(), batch["index"].tolist())]
        sizes = [len(dm.index(split)) for dm in multi.datamodules]
        assert seen == [(tag, index) for tag, size in enumerate(sizes) for index in range(size)]
    assert multi.on_after_batch_transfer(batches[0], 0)["flow"].materialise().shape == (1, 20, 8, 32, 32)


def test_every_dataset_reads_what_the_network_reads(multi):
    assert [dm.modality for dm in multi.datamodules] == ["flow", "flow"]
    assert all(dm.input_specs == FLOW for dm in multi.datamodules)


def test_test_video_ids_and_classes_per_dataset_in_head_order(multi):
    ids = multi.test_video_ids
    assert [len(dataset_ids) for dataset_ids in ids] == [len(dm.index("test")) for dm in multi.datamodules]
    assert [len(names) for names in multi.classes] == multi.num_classes
    for dataset in (dm.make_dataset("test", tag) for tag, dm in enumerate(multi.datamodules)):
        for index in range(0, len(dataset), 3):
            sample = dataset[index]
            # Both layouts file a video under its class folder.
            assert ids[sample["dataset"]][index].split("/")[0] == multi.classes[sample["dataset"]][sample["label"]]


def test_datasets_must_give_samples_of_one_shape(multi):
    first, second = multi.datamodules
    second.sampling = replace(second.sampling, test_positions=3)
    try:
        with pytest.raises(ValueError, match=r"datamodules\[1\] differs .*test.positions"):
            MultiDataModule([first, second])
    finally:
        second.sampling = first.sampling


def test_default_test_crops_that_follow_flip_are_compared_once_the_input_is_known(multi):
    first, second = multi.datamodules
    unmirrored = VideoDataModule(second.annotations, second.roots, augment=Augmentation(short_side=None, flip=False),
                                 test=second.protocol, loader=second.loader_settings)
    combined = MultiDataModule([first, unmirrored])  # crops None in both: equal so far
    with pytest.raises(ValueError, match=r"differs from datamodules\[0\] in \['test.crops'\]"):
        combined.set_input_specs(FLOW)  # ten crops beside five
