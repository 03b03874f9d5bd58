"""Several datasets at once: the two-stream paper's multi-task training (one temporal net,
a softmax head per dataset, trained on UCF-101 and HMDB-51 together).

Every loader runs over the concatenated datasets, and every sample carries ``dataset``
(the position of its DataModule in ``datamodules``), so the LightningModule applies each
head to its own dataset's samples: training shuffles them together; validation, test and
predict keep dataset order (one loader, so Lightning adds no ``dataloader_idx`` to the steps
or the logged names). A sample's ``index`` is its position in its own dataset, so
``test_video_ids[d][index]`` names a test video of dataset d. Batches mix datasets, so the
datasets must agree on every setting that shapes a sample.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
from torch.utils.data import ConcatDataset, DataLoader

from datamodules.batch import input_dtype
from datamodules.datamodule import Split, VideoDataModule
from datamodules.datasets import VideoDataset
from models.input_spec import InputSpec


def sample_settings(dm: VideoDataModule) -> dict[str, object]:
    """What shapes a datamodule's samples beyond the networks' input (a batch can only stack
    equal shapes), by config key; the test crops only once the input says them (their default
    follows 2D/3D and the dataset's flip).

    Args:
        dm: the datamodule.
    """
    views = dm.sampling
    settings = {"test.positions": views.test_positions, "test.clips": views.test_clips,
                "test.whole_video": views.whole_video, "sampling.stride": views.stride,
                "sampling.bidirectional_flow": dm.frame_sampling.bidirectional_flow,
                "sampling.stacking": dm.frame_sampling.stacking,
                "augment.flow_mean_subtraction": dm.augment.flow_mean_subtraction}
    return settings if dm.test_crops is None else {**settings, "test.crops": dm.test_crops}


class MultiDataModule(pl.LightningDataModule):
    """Combines DataModules of different datasets that feed one network.

    Args:
        datamodules: one per dataset, in the order of the model's heads (e.g. UCF-101's,
            then HMDB-51's). They must agree on the test views, the sampling and the flow mean
            subtraction (the networks' input specs reach all of them alike); the first one's
            ``loader`` block (batch sizes, workers, seed) serves the combined loaders.
    """

    def __init__(self, datamodules: list[VideoDataModule]):
        super().__init__()
        if not datamodules:
            raise ValueError("give at least one datamodule")
        self.datamodules = list(datamodules)
        self._check_shared_settings()
        self.datasets: dict[Split, list[VideoDataset]] = {}

    @property
    def num_classes(self) -> list[int]:
        """Classes per dataset, in head order (available right after ``__init__``)."""
        return [dm.num_classes for dm in self.datamodules]

    @property
    def classes(self) -> list[list[str]]:
        """Class names in label order, per dataset in head order."""
        return [dm.classes for dm in self.datamodules]

    @property
    def test_video_ids(self) -> list[list[str]]:
        """Test video ids per dataset in head order: the test sample with ``dataset`` d and
        ``index`` i is video ``test_video_ids[d][i]``."""
        return [dm.test_video_ids for dm in self.datamodules]

    def _check_shared_settings(self) -> None:
        """The datasets agree on what shapes a sample."""
        first = sample_settings(self.datamodules[0])
        for position, dm in enumerate(self.datamodules[1:], 1):
            settings = sample_settings(dm)
            differ = [name for name, value in settings.items() if name in first and value != first[name]]
            if differ:
                raise ValueError(f"batches mix the datasets, but datamodules[{position}] differs from datamodules[0] "
                                 f"in {differ}")

    def set_input_specs(self, specs: Mapping[str, InputSpec | None]) -> None:
        """What the network reads, for every dataset (``VideoDataModule.set_input_specs``)."""
        for dm in self.datamodules:
            dm.set_input_specs(specs)
        self._check_shared_settings()  # test crops follow the input now (and each dataset's flip)
        self.datasets.clear()

    def _specs_from_model(self) -> None:
        """Where nothing set the input yet, the attached model's (the datamodules inside have no trainer)."""
        if self.datamodules[0].modality is None:
            specs = getattr(self.trainer.lightning_module, "input_specs", None) if self.trainer else None
            if specs is None:
                raise ValueError("data input: not set, and no model's input_specs to take it from; attach a model "
                                 "whose network declares input_spec, or call set_input_specs")
            self.set_input_specs(specs)

    def prepare_data(self) -> None:
        self._specs_from_model()
        for dm in self.datamodules:
            dm.prepare_data()

    def setup(self, stage: str) -> None:
        self._specs_from_model()

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """uint8 batches to the network's inputs on the device (the datasets share the settings)."""
        return self.datamodules[0].finish(batch, input_dtype(self.trainer))

    def _datasets(self, split: Split) -> list[VideoDataset]:
        if split not in self.datasets:
            self.datasets[split] = [dm.make_dataset(split, tag) for tag, dm in enumerate(self.datamodules)]
        return self.datasets[split]

    def _combined(self, split: Split) -> DataLoader:
        """One loader over all datasets' ``split``; test batches shard without padding."""
        return self.datamodules[0].loader(ConcatDataset(self._datasets(split)), split)

    def train_dataloader(self) -> DataLoader:
        return self._combined("train")

    def val_dataloader(self) -> DataLoader:
        return self._combined("val")

    def test_dataloader(self) -> DataLoader:
        return self._combined("test")

    def predict_dataloader(self) -> DataLoader:
        return self._combined("test")
