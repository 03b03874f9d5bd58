"""The DataModule: its parts as config blocks, class counts before setup, loaders, validation
split, the networks' specs as the only input, DDP sampling."""

import re
import shutil
from dataclasses import replace
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from jsonargparse import ArgumentParser
from pytorch_lightning.trainer.states import RunningStage

import datamodules.index as index_module
from datamodules import (
    Augmentation,
    EvalProtocol,
    FrameSampling,
    LoaderSettings,
    Roots,
    VideoDataModule,
    generate,
)
from datamodules.annotations import HMDB51, UCF101, Kinetics, ListFiles
from datamodules.distributed import UnpaddedDistributedSampler
from datamodules.modality import paper_specs
from flow.extract import ExtractionConfig, extract_many
from models.input_spec import flow_pixels, flow_unit, imagenet_rgb, symmetric_rgb
from tests.conftest import finished

CROP = 32


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    data = generate(root / "data", "ucf101", num_classes=4, videos_per_class=4, num_frames=12, size=(64, 48))
    videos = [str(path.relative_to(data.video_root)) for path in data.videos]
    assert extract_many(data.video_root, videos, root / "frames", ExtractionConfig(algorithm="dis", short_side=0),
                        progress=False).failed == 0
    return data, root


def ucf_dm(ucf, modality: str | None = None, fields: int = 4, frames: int = 64, roots: dict = {},
           augment: dict = {}, sampling: dict = {}, test: dict = {}, loader: dict = {}) -> VideoDataModule:
    """The tiny UCF-101's data module with small test settings; with ``modality``, fed the
    papers' specs for it (L=``fields``, T=``frames``, 32 px crops) as a network would."""
    data, root = ucf
    dm = VideoDataModule(
        UCF101(str(data.annotation_dir)),
        Roots(**{"video_root": str(data.video_root), "frames_root": str(root / "frames"),
                 "cache_dir": str(root / "cache"), **roots}),
        augment=Augmentation(**{"short_side": None, **augment}),
        sampling=FrameSampling(**sampling),
        test=EvalProtocol(**{"positions": 2, **test}),
        loader=LoaderSettings(**{"batch_size": 3, "num_workers": 0, "pin_memory": False, **loader}),
    )
    if modality is not None:
        dm.set_input_specs(paper_specs(modality, fields, frames, CROP))
    return dm


def test_num_classes_right_after_init(ucf, tmp_path):
    data, root = ucf
    assert ucf_dm(ucf).num_classes == 4
    hmdb = generate(tmp_path / "hmdb", "hmdb51", num_classes=3, videos_per_class=2, num_frames=2, size=(16, 16))
    assert VideoDataModule(HMDB51(str(hmdb.annotation_dir)), Roots(str(hmdb.video_root))).num_classes == 3
    kinetics = generate(tmp_path / "kinetics", "kinetics", num_classes=5, videos_per_class=2, num_frames=2,
                        size=(16, 16))
    csvs = {"train_csv": str(kinetics.annotation_dir / "train.csv"), "val_csv": str(kinetics.annotation_dir / "val.csv")}
    assert VideoDataModule(Kinetics(**csvs), Roots(str(kinetics.video_root))).num_classes == 5
    with_map = VideoDataModule(Kinetics(**csvs, label_map=str(kinetics.annotation_dir / "label_map.txt")),
                               Roots(str(kinetics.video_root)))
    assert with_map.classes == kinetics.classes
    listed = tmp_path / "train.txt"
    listed.write_text("A/a.avi 0\nB/b.avi 6\n")
    source = ListFiles(train_list=str(listed), test_list=str(listed))
    assert VideoDataModule(source, Roots(str(tmp_path))).num_classes == 7


def test_loaders_iterate_whole_epochs(ucf):
    dm = ucf_dm(ucf, "two_stream")
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    train = list(dm.train_dataloader())
    assert len(train) == len(dm.datasets["train"]) // 3  # drop_last in training
    assert train[0]["rgb"].dtype == train[0]["flow"].dtype == torch.uint8  # finished on the device
    first = dm.on_after_batch_transfer(train[0], 0)
    assert first["rgb"].shape == (3, 3, 32, 32) and first["flow"].shape == (3, 8, 32, 32)
    val = list(dm.val_dataloader())
    assert sum(len(batch["index"]) for batch in val) == len(dm.datasets["val"])
    test = list(dm.test_dataloader())  # test_batch_size 1: one video and its 2 x 10 views
    assert len(test) == len(dm.datasets["test"])
    assert dm.on_after_batch_transfer(test[0], 0)["flow"].materialise().shape == (1, 20, 8, 32, 32)


def test_validation_is_the_test_split_with_one_centre_view(ucf):
    dm = ucf_dm(ucf, "rgb")
    assert dm.index("val").video_ids == dm.index("test").video_ids != dm.index("train").video_ids
    assert finished(dm.make_dataset("val"), 0)["rgb"].shape == (3, 32, 32)


def test_seeded_loader_repeats_with_workers(ucf):
    def epoch():
        dm = ucf_dm(ucf, "flow", loader={"seed": 7, "num_workers": 2})
        return [batch["flow"] for batch in dm.train_dataloader()]

    first, second = epoch(), epoch()
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_the_networks_specs_are_the_input(ucf):
    dm = ucf_dm(ucf)
    dm.set_input_specs({"rgb": imagenet_rgb(size=24), "flow": flow_pixels(3, 24)})
    sample = finished(dm.make_dataset("train"), 0)
    assert dm.modality == "two_stream" and sample["rgb"].shape == (3, 24, 24) and sample["flow"].shape == (6, 24, 24)
    dm.set_input_specs({"flow": flow_pixels(2, 16)})  # other networks: other samples, another index
    assert dm.modality == "flow" and finished(dm.make_dataset("train"), 0)["flow"].shape == (4, 16, 16)
    dm.trainer = SimpleNamespace(lightning_module=SimpleNamespace(input_specs={"rgb": imagenet_rgb(size=16)}))
    dm.setup("fit")  # set already: the model's specs are not a second route
    assert dm.modality == "flow"
    with pytest.raises(ValueError, match="'flow' InputSpec is a rgb spec"):
        ucf_dm(ucf).set_input_specs({"flow": imagenet_rgb()})


def test_parts_parse_as_nested_config_blocks(ucf, capsys):
    data, root = ucf
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(VideoDataModule, "data")
    source = ["--data.annotations", "datamodules.annotations.UCF101",
              "--data.annotations.annotation_dir", str(data.annotation_dir)]
    config = parser.parse_args([*source, "--data.roots.video_root", "v", "--data.loader.batch_size", "5",
                                "--data.test.crops", "three", "--data.augment.multiscale_crop", "true"])
    assert config.data.loader.batch_size == 5 and config.data.loader.num_workers == 4
    assert config.data.test.crops == "three" and config.data.test.positions == 25
    assert config.data.augment.multiscale_crop and config.data.annotations.init_args.split == 1
    help_text = " ".join(parser.format_help().split())
    assert "videos per training and validation batch" in help_text and "annotation files" in help_text
    for setting in ("modality", "num_fields", "frames", "crop_size", "rgb_spec"):  # the networks say these
        assert f"--data.{setting} " not in help_text and f"--data.augment.{setting} " not in help_text
    with pytest.raises(Exception, match="batchsize"):
        parser.parse_args([*source, "--data.roots.video_root", "v", "--data.loader.batchsize", "5"])
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    built = instantiate(parser.parse_args([*source, "--data.roots.video_root", str(data.video_root),
                                           "--data.loader.batch_size", "5"])).data
    assert isinstance(built.annotations, UCF101) and built.num_classes == 4
    assert built.loader_settings == LoaderSettings(batch_size=5) and built.roots == Roots(str(data.video_root))


def test_test_video_ids_name_the_test_samples(ucf):
    dm = ucf_dm(ucf, "rgb", loader={"test_batch_size": 4})
    dm.setup("test")
    ids = dm.test_video_ids
    seen = []
    for batch in dm.test_dataloader():
        for index, label in zip(batch["index"].tolist(), batch["label"].tolist()):
            assert ids[index] == dm.datasets["test"].index.video_ids[index]
            assert ids[index].split("/")[0] == dm.classes[label]  # UCF ids start with the class folder
            seen.append(index)
    assert seen == list(range(len(ids)))


def test_classes_are_the_class_names_in_label_order(ucf):
    data, _ = ucf
    assert ucf_dm(ucf).classes == data.classes


def test_svm_train_loader_scores_every_training_video_once_with_few_views(ucf):
    dm = ucf_dm(ucf, "two_stream", loader={"test_batch_size": 3})
    batches = list(dm.svm_train_dataloader())
    first = dm.on_after_batch_transfer(batches[0], 1)
    assert first["rgb"].shape == (3, 5) and first["flow"].materialise().shape == (3, 5, 8, 32, 32)
    train = dm.index("train")
    indices = torch.cat([batch["index"] for batch in batches]).tolist()
    assert indices == list(range(len(train)))
    assert torch.cat([batch["label"] for batch in batches]).tolist() == train.labels
    three = ucf_dm(ucf, "rgb", test={"svm_positions": 2, "svm_crops": "three"}).make_svm_dataset()
    assert finished(three, 0)["rgb"].shape == (6, 3, 32, 32)
    clips = ucf_dm(ucf, "rgb_clip", frames=4, test={"svm_positions": 2, "clips": 7}).make_svm_dataset()
    assert finished(clips, 0)["rgb"].shape == (2, 3, 4, 32, 32)
    with pytest.raises(ValueError, match="^test.svm_crops must be one of"):
        EvalProtocol(svm_crops="nine")


def fake_rank(monkeypatch, rank: int, world_size: int) -> None:
    """torch.distributed looking initialised with ``world_size`` ranks, this one ``rank``."""
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: world_size)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: rank)


def test_svm_train_loader_shards_without_padding(ucf, monkeypatch):
    shards = []
    for rank in (0, 1):
        fake_rank(monkeypatch, rank, 2)
        loader = ucf_dm(ucf, "rgb", loader={"test_batch_size": 2}).svm_train_dataloader()
        assert isinstance(loader.sampler, UnpaddedDistributedSampler)
        shards.append([i for batch in loader for i in batch["index"].tolist()])
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(len(ucf_dm(ucf, "rgb").index("train"))))


def test_other_ranks_load_the_index_rank_0_built(ucf, tmp_path, monkeypatch):
    rank0 = ucf_dm(ucf, "two_stream", roots={"cache_dir": str(tmp_path / "cache")})
    rank0.prepare_data()

    def no_build(*args, **kwargs):
        raise AssertionError("the index was built again instead of loaded")

    monkeypatch.setattr(index_module, "_build", no_build)
    rank1 = ucf_dm(ucf, "two_stream", roots={"cache_dir": str(tmp_path / "cache")})
    rank1.setup("fit")
    rank1.setup("test")
    assert set(rank1._indices) == {"train", "val", "test"}
    assert all(index.from_cache for index in rank1._indices.values())


def missing(tmp_path) -> str:
    return str(tmp_path / "absent")


def names_missing(setting: str, tmp_path) -> str:
    """The one-line message for a missing path, as a regex."""
    return f"^{setting}: {re.escape(missing(tmp_path))} does not exist$"


@pytest.mark.parametrize("setting", ["video_root", "frames_root", "annotation_dir"])
def test_missing_ucf_paths_name_the_setting(ucf, tmp_path, setting):
    data, root = ucf
    paths = {"annotation_dir": str(data.annotation_dir), "video_root": str(data.video_root),
             "frames_root": str(root / "frames"), setting: missing(tmp_path)}
    with pytest.raises(FileNotFoundError, match=names_missing(setting, tmp_path)):
        VideoDataModule(UCF101(paths.pop("annotation_dir")), Roots(**paths)).set_input_specs(paper_specs("two_stream"))


def test_missing_annotation_file_and_wrong_split_name_the_setting(ucf, tmp_path):
    data, _ = ucf
    partial = tmp_path / "annotations"
    shutil.copytree(data.annotation_dir, partial)
    (partial / "trainlist03.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"^annotation_dir: .*trainlist03.txt does not exist$"):
        UCF101(str(partial), split=3)
    with pytest.raises(ValueError, match="^split: .* got 4$"):
        UCF101(str(data.annotation_dir), split=4)
    with pytest.raises(ValueError, match="^split: .* got 0$"):
        HMDB51(str(data.annotation_dir), split=0)
    with pytest.raises(FileNotFoundError, match="^split_dir: "):
        HMDB51(missing(tmp_path))
    with pytest.raises(NotADirectoryError, match="^video_root: .* is not a folder$"):
        VideoDataModule(UCF101(str(data.annotation_dir)), Roots(str(data.annotation_dir / "classInd.txt")))


def test_only_the_roots_the_modality_reads_must_exist(ucf, tmp_path):
    data, root = ucf
    flow_only = VideoDataModule(UCF101(str(data.annotation_dir)), Roots(missing(tmp_path), str(root / "frames")))
    flow_only.set_input_specs(paper_specs("flow"))
    assert flow_only.modality == "flow" and flow_only.num_classes == 4
    with pytest.raises(ValueError, match="set roots.frames_root"):
        VideoDataModule(UCF101(str(data.annotation_dir)), Roots(str(data.video_root))).set_input_specs(
            paper_specs("flow"))


@pytest.mark.parametrize("setting", ["train_csv", "val_csv", "test_csv", "label_map"])
def test_missing_kinetics_files_name_the_setting(tmp_path, setting):
    for name in ("train_csv", "val_csv"):
        (tmp_path / name).write_text("label,youtube_id,time_start,time_end,split\n")
    files = {"train_csv": str(tmp_path / "train_csv"), "val_csv": str(tmp_path / "val_csv"), setting: missing(tmp_path)}
    with pytest.raises(FileNotFoundError, match=names_missing(setting, tmp_path)):
        Kinetics(**files)


@pytest.mark.parametrize("setting", ["train_list", "val_list", "test_list", "class_names"])
def test_missing_list_files_name_the_setting(tmp_path, setting):
    (tmp_path / "list.txt").write_text("A/a.avi 0\n")
    files = {"train_list": str(tmp_path / "list.txt"), "test_list": str(tmp_path / "list.txt"),
             setting: missing(tmp_path)}
    with pytest.raises(FileNotFoundError, match=names_missing(setting, tmp_path)):
        ListFiles(**files)


@pytest.fixture
def fake_world(monkeypatch):
    """torch.distributed looking initialised with 3 ranks, this one rank 1."""
    fake_rank(monkeypatch, 1, 3)


def test_distributed_test_loader_shards_without_padding(ucf, fake_world):
    dm = ucf_dm(ucf, "rgb")
    loader = dm.test_dataloader()
    size = len(dm.datasets["test"])
    assert isinstance(loader.sampler, UnpaddedDistributedSampler)
    assert list(loader.sampler) == list(range(1, size, 3))
    assert not isinstance(dm.val_dataloader().sampler, UnpaddedDistributedSampler)


def lightning_test_loader(loader, **trainer_settings):
    trainer = pl.Trainer(accelerator="cpu", strategy="ddp", devices=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, **trainer_settings)
    return trainer._data_connector._prepare_dataloader(loader, shuffle=False, mode=RunningStage.TESTING)


def test_lightning_keeps_the_unpadded_sampler_without_its_own(ucf, fake_world):
    loader = ucf_dm(ucf, "rgb").test_dataloader()
    prepared = lightning_test_loader(loader, use_distributed_sampler=False)
    assert prepared.sampler is loader.sampler


def test_lightning_keeps_the_unpadded_sampler_by_default(ucf, fake_world):
    loader = ucf_dm(ucf, "rgb").test_dataloader()
    assert lightning_test_loader(loader).sampler is loader.sampler


def test_meta_less_mmaction2_flow_folders(ucf, tmp_path):
    """Flow extracted by another tool: ``x_00001.jpg`` names, 1-based, no meta.json."""
    data, root = ucf
    frames = tmp_path / "mmaction2_frames"
    shutil.copytree(root / "frames", frames)
    for meta in frames.rglob("meta.json"):
        meta.unlink()
    for image in frames.rglob("flow_*.jpg"):
        image.rename(image.with_name(image.name.replace("flow_", "")))
    dm = ucf_dm(ucf, "flow", roots={"frames_root": str(frames), "flow_layout": "mmaction2",
                                    "cache_dir": str(tmp_path / "cache")})
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["flow"].shape[1:] == (8, 32, 32)
    with pytest.raises(ValueError, match="^roots.flow_layout must be one of"):
        ucf_dm(ucf, roots={"frames_root": str(frames), "flow_layout": "tsn"})


def test_bidirectional_flow_settings_fail_when_the_networks_say_the_input(ucf):
    both_ways = {"bidirectional_flow": True}
    for modality in ("rgb", "flow_clip", "two_stream_clip"):
        with pytest.raises(ValueError, match=f"bidirectional_flow .* not '{modality}'"):
            ucf_dm(ucf, modality, sampling=both_ways)
    with pytest.raises(ValueError, match="must be even, got 5"):
        ucf_dm(ucf, "flow", fields=5, sampling=both_ways)
    dm = ucf_dm(ucf, "two_stream", sampling=both_ways)
    with pytest.raises(ValueError, match="must be even, got 3"):
        dm.set_input_specs({"flow": flow_pixels(3, 32)})


def test_bidirectional_flow_without_backward_extraction_fails_at_setup_naming_videos(ucf):
    dm = ucf_dm(ucf, "flow", sampling={"bidirectional_flow": True})  # this fixture's flow is forward only
    first = dm.index("train").video_ids[0]
    with pytest.raises(ValueError, match=rf"lack \(meta.json backward=false\), e.g. {re.escape(first)}.*--backward"):
        dm.setup("fit")


def test_a_datamodule_without_annotations_fails_at_once(ucf):
    """The old base built from a config and failed later inside len(None)."""
    data, _ = ucf
    with pytest.raises(TypeError, match="annotations: expected an AnnotationSource"):
        VideoDataModule(str(data.annotation_dir), Roots(str(data.video_root)))
    with pytest.raises(TypeError):
        VideoDataModule(roots=Roots(str(data.video_root)))


def test_flip_follows_the_annotations_and_can_be_turned_off(ucf):
    dm = ucf_dm(ucf, "rgb")
    assert dm.flip and dm.test_crops == "ten"
    dm = ucf_dm(ucf, "rgb", augment={"flip": False})
    assert not dm.flip and dm.test_crops == "five"
    dm.setup("fit")
    assert not dm.datasets["train"].augment.flip
    dm.setup("test")
    assert finished(dm.datasets["test"], 0)["rgb"].shape[0] == 2 * 5  # test_positions x five unmirrored crops
    with pytest.raises(ValueError, match="^test.crops: 'ten' mirrors"):
        ucf_dm(ucf, augment={"flip": False}, test={"crops": "ten"})
    with pytest.raises(ValueError, match="^test.svm_crops: 'ten' mirrors"):
        ucf_dm(ucf, augment={"flip": False}, test={"svm_crops": "ten"})


def test_a_cuda_decoder_gets_spawned_workers(ucf):
    """torchcodec_cuda readers ask for spawned workers: forked ones cannot use CUDA once the model is on it."""
    cuda_reader = SimpleNamespace(reader=SimpleNamespace(worker_start_method="spawn"))
    assert VideoDataModule._worker_start_method(cuda_reader) == "spawn"
    dm = ucf_dm(ucf, "rgb", loader={"num_workers": 1})
    dataset = dm.make_dataset("val")
    assert dm.loader(dataset, "val").multiprocessing_context is None  # CPU decoders keep the default
    dataset.reader.worker_start_method = "spawn"
    assert dm.loader(dataset, "val").multiprocessing_context.get_start_method() == "spawn"


def test_the_input_comes_from_the_model_when_nothing_set_it(ucf):
    dm = ucf_dm(ucf)
    assert dm.modality is None
    dm.trainer = SimpleNamespace(lightning_module=SimpleNamespace(input_specs={"rgb": imagenet_rgb(size=32),
                                                                               "flow": flow_pixels(4, 32)}))
    dm.setup("fit")
    assert dm.modality == "two_stream" and finished(dm.datasets["train"], 0)["flow"].shape == (8, 32, 32)
    clips = ucf_dm(ucf)
    clips.set_input_specs({"rgb": symmetric_rgb(frames=4, size=32)})
    assert clips.modality == "rgb_clip" and clips.test_crops == "three"
    with pytest.raises(ValueError, match="mix 2D and 3D"):
        ucf_dm(ucf).set_input_specs({"rgb": imagenet_rgb(size=32), "flow": flow_unit(3, 4, 32)})
    alone = ucf_dm(ucf)
    alone.trainer = None
    with pytest.raises(ValueError, match="data input: not set"):
        alone.setup("fit")
    with pytest.raises(ValueError, match="data input: not known yet"):
        alone.index("test")  # which videos are usable depends on what the input reads


def test_whole_video_test_needs_one_video_per_batch(ucf):
    with pytest.raises(ValueError, match="^test.whole_video .* loader.test_batch_size to 1$"):
        ucf_dm(ucf, test={"whole_video": True}, loader={"test_batch_size": 2})
    dm = ucf_dm(ucf, "rgb_clip", frames=4, test={"whole_video": True})
    assert dm.sampling == replace(dm.sampling, whole_video=True)
