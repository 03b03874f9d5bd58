"""The per-dataset DataModule names of earlier configs, kept working.

``datamodules.UCF101DataModule`` with ``annotation_dir``/``split`` is
``datamodules.VideoDataModule`` with ``annotations: datamodules.annotations.UCF101``;
likewise HMDB51, Kinetics and ListFiles. Each builds its source and warns once with the
YAML to write instead (``FutureWarning``: shown to users by default); new datasets have
no such name.
"""

from __future__ import annotations

import warnings
from typing import Literal

from datamodules.annotations import (
    HMDB51,
    UCF101,
    AnnotationSource,
    Kinetics,
    ListFiles,
)
from datamodules.annotations.kinetics import VideoLayout
from datamodules.datamodule import VideoDataModule


def _warn(old: type, source: AnnotationSource, settings: dict) -> None:
    args = ", ".join(f"{name}: {value}" for name, value in settings.items() if value is not None)
    warnings.warn(f"datamodules.{old.__name__} is deprecated; write data: class_path: datamodules.VideoDataModule, "
                  f"init_args: annotations: {{class_path: datamodules.annotations.{type(source).__name__}, "
                  f"init_args: {{{args}}}}} (the other init_args stay)", FutureWarning, stacklevel=3)


class UCF101DataModule(VideoDataModule):
    """Deprecated: ``VideoDataModule(annotations=UCF101(annotation_dir, split), ...)``."""

    def __init__(self, annotation_dir: str, split: int = 1, **kwargs):
        source = UCF101(annotation_dir, split)
        _warn(UCF101DataModule, source, {"annotation_dir": annotation_dir, "split": split})
        super().__init__(annotations=source, **kwargs)
        self.annotation_dir, self.split = annotation_dir, split


class HMDB51DataModule(VideoDataModule):
    """Deprecated: ``VideoDataModule(annotations=HMDB51(split_dir, split), ...)``."""

    def __init__(self, split_dir: str, split: int = 1, **kwargs):
        source = HMDB51(split_dir, split)
        _warn(HMDB51DataModule, source, {"split_dir": split_dir, "split": split})
        super().__init__(annotations=source, **kwargs)
        self.split_dir, self.split = split_dir, split


class KineticsDataModule(VideoDataModule):
    """Deprecated: ``VideoDataModule(annotations=Kinetics(train_csv, val_csv, ...), ...)``."""

    def __init__(
        self,
        train_csv: str,
        val_csv: str,
        test_csv: str | None = None,
        label_map: str | None = None,
        video_layout: VideoLayout = "auto",
        **kwargs,
    ):
        source = Kinetics(train_csv, val_csv, test_csv, label_map, video_layout)
        _warn(KineticsDataModule, source, {"train_csv": train_csv, "val_csv": val_csv, "test_csv": test_csv,
                                           "label_map": label_map})
        super().__init__(annotations=source, **kwargs)


class ListDataModule(VideoDataModule):
    """Deprecated: ``VideoDataModule(annotations=ListFiles(train_list, ...), ...)``."""

    def __init__(
        self,
        train_list: str,
        val_list: str | None = None,
        test_list: str | None = None,
        class_names: str | None = None,
        list_kind: Literal["video", "rawframes"] = "video",
        **kwargs,
    ):
        source = ListFiles(train_list, val_list, test_list, class_names, list_kind)
        _warn(ListDataModule, source, {"train_list": train_list, "val_list": val_list, "test_list": test_list,
                                       "class_names": class_names})
        super().__init__(annotations=source, **kwargs)
