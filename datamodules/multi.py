"""Several datasets at once: the two-stream paper's multi-task training (one temporal net,
a softmax head per dataset, trained on UCF-101 and HMDB-51 together).

Training concatenates the datasets into one shuffled loader; every sample carries
``dataset`` (the position of its DataModule in ``datamodules``), so the LightningModule
applies each head's loss to its own dataset's samples. Validation, test and predict give
one loader per dataset (Lightning's ``dataloader_idx`` is the same position), since each
is scored on its own classes.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
from torch.utils.data import ConcatDataset, DataLoader

from datamodules.datamodule import Split, VideoDataModule
from datamodules.datasets import VideoDataset
from models.input_spec import InputSpec


class MultiDataModule(pl.LightningDataModule):
    """Combines DataModules of different datasets that feed one network.

    Args:
        datamodules: one per dataset, in the order of the model's heads (e.g. a
            UCF101DataModule, then an HMDB51DataModule). They must share the modality;
            the first one's loader settings (batch size, workers, seed) serve the
            combined training loader, each its own for evaluation.
    """

    def __init__(self, datamodules: list[VideoDataModule]):
        super().__init__()
        if not datamodules:
            raise ValueError("give at least one datamodule")
        modalities = {dm.modality for dm in datamodules}
        if len(modalities) != 1:
            raise ValueError(f"the datasets must share one modality, got {sorted(modalities)}")
        self.datamodules = list(datamodules)
        self.datasets: dict[Split, list[VideoDataset]] = {}

    @property
    def num_classes(self) -> list[int]:
        """Classes per dataset, in head order (available right after ``__init__``)."""
        return [dm.num_classes for dm in self.datamodules]

    def set_input_specs(self, specs: Mapping[str, InputSpec]) -> None:
        for dm in self.datamodules:
            dm.set_input_specs(specs)
        self.datasets.clear()

    def prepare_data(self) -> None:
        for dm in self.datamodules:
            dm.prepare_data()

    def setup(self, stage: str) -> None:
        model_specs = getattr(self.trainer.lightning_module, "input_specs", None) if self.trainer else None
        if model_specs is not None:
            self.set_input_specs(model_specs)

    def _datasets(self, split: Split) -> list[VideoDataset]:
        if split not in self.datasets:
            self.datasets[split] = [dm.make_dataset(split, tag) for tag, dm in enumerate(self.datamodules)]
        return self.datasets[split]

    def train_dataloader(self) -> DataLoader:
        return self.datamodules[0].loader(ConcatDataset(self._datasets("train")), "train")

    def _per_dataset(self, split: Split) -> list[DataLoader]:
        return [dm.loader(dataset, split) for dm, dataset in zip(self.datamodules, self._datasets(split))]

    def val_dataloader(self) -> list[DataLoader]:
        return self._per_dataset("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._per_dataset("test")

    def predict_dataloader(self) -> list[DataLoader]:
        return self._per_dataset("test")
