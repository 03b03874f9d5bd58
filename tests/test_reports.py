import json

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from datamodules.inputs import flow_to_input, quantization, rgb_to_input
from flow.codec import dequantize
from flow.colorwheel import flow_to_color
from lightning_modules.evaluation import Evaluation
from lightning_modules.loggers import OfflineFallbackWandbLogger
from lightning_modules.reports import (
    WandbReports,
    flow_image,
    per_class_rows,
    rgb_image,
)
from lightning_modules.two_stream import TwoStreamClassifier
from models.input_spec import flow_pixels, flow_unit, imagenet_rgb
from tests.test_classifier import NUM_CLASSES, SIZE, tiny_builder, tiny_network
from tests.test_loggers import run_file
from tests.test_two_stream import TwoStreamData

CLASSES = ["archery", "bowling", "cycling"]


class NamedData(TwoStreamData):
    classes = CLASSES


def two_stream() -> TwoStreamClassifier:
    def flow_builder(num_classes: int):
        network = tiny_network(4, "flow", num_classes)
        network.input_spec = flow_pixels(2, SIZE)  # a real flow normalisation, to undo
        return network

    return TwoStreamClassifier(tiny_builder, flow_builder, NUM_CLASSES,
                               evaluation=Evaluation(view_chunk_size=3, score_file=None))


def test_two_stream_run_logs_samples_confusion_matrices_and_per_class_table(wandb_env, tmp_path):
    logger = OfflineFallbackWandbLogger(save_dir=tmp_path)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=0,
                         logger=logger, callbacks=[WandbReports(samples=2)], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    model = two_stream()
    trainer.fit(model, NamedData())
    trainer.test(model, NamedData(), verbose=False)
    logger.experiment.finish()

    records = run_file(tmp_path)
    for key in ("samples/rgb", "samples/flow", "test/spatial/confusion_matrix", "test/temporal/confusion_matrix",
                "test/fusion/confusion_matrix", "test/per_class_accuracy"):
        assert key.encode() in records, key
    files = next(tmp_path.glob("wandb/offline-run-*/files/media"))
    assert len(list(files.glob("images/samples/*.png"))) == 4  # 2 samples x (rgb, flow)
    (table_file,) = files.glob("table/test/per_class_accuracy_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["class", "videos", "accuracy/spatial", "accuracy/temporal", "accuracy/fusion"]
    assert [row[:2] for row in table["data"]] == [["archery", 3], ["bowling", 3], ["cycling", 2]]
    results = model.test_results[""]
    spatial = (results["scores_spatial"].argmax(1) == results["labels"])[results["labels"] == 0].mean()
    assert table["data"][0][2] == spatial


def test_does_nothing_without_wandb(tmp_path):
    trainer = pl.Trainer(logger=CSVLogger(tmp_path), enable_progress_bar=False)
    model = two_stream()
    model.test_results = {"": {"labels": np.array([0, 1]), "scores_spatial": np.eye(3)[:2], "index": np.arange(2)}}
    reports = WandbReports()
    reports.on_train_batch_start(trainer, model, {"rgb": torch.zeros(1, 3, 16, 16), "label": torch.zeros(1)}, 0)
    reports.on_test_end(trainer, model)
    assert not list(tmp_path.rglob("wandb"))


def test_per_class_rows():
    labels = np.array([0, 0, 1, 2])
    rows = per_class_rows(labels, {"rgb": np.array([0, 1, 1, 0])}, ["a", "b", "c", "d"])
    assert rows == [["a", 2, 0.5], ["b", 1, 1.0], ["c", 1, 0.0], ["d", 0, None]]


def test_inputs_are_shown_as_they_were_before_normalisation():
    rng = np.random.default_rng(0)
    frame = torch.from_numpy(rng.integers(0, 256, (1, 3, 8, 8), dtype=np.uint8))
    spec = imagenet_rgb(size=8)
    np.testing.assert_allclose(rgb_image(rgb_to_input(frame[None], spec)[0], spec), frame[0].permute(1, 2, 0), atol=1)

    planes = torch.from_numpy(rng.integers(0, 256, (3, 2, 8, 8), dtype=np.uint8))  # 3 fields of [x, y]
    pixels = dequantize(planes.numpy(), 20.0)
    for spec, field in ((flow_pixels(3, 8), 0), (flow_unit(3, 3, 8, bound=20.0), 1)):
        x = flow_to_input(planes[None], quantization(20.0), spec, subtract_mean=False)[0]
        expected = flow_to_color(pixels[field].transpose(1, 2, 0))
        np.testing.assert_allclose(flow_image(x, spec), expected, atol=1)  # float rounding
