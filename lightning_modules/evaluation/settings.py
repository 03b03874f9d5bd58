"""A module's evaluation settings: its ``evaluation:`` block (``model.init_args.evaluation``)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Evaluation:
    """How a module scores its test videos and where the scores go.

    Args:
        view_chunk_size: test views per forward pass: the memory bound of 25 x 10 testing
            (a chunk's float views and activations exist at once, never all the views').
        score_file: per-video test scores (``.npz``), relative to ``trainer.log_dir`` (under
            cli.py: the experiment's folder); a named group's file (a dataset of
            ``MultiTaskClassifier``, the SVM's training videos) gets ``_<group>`` before the
            suffix; None: not written.
    """

    view_chunk_size: int = 32
    score_file: str | None = "test_scores.npz"

    def __post_init__(self) -> None:
        if self.view_chunk_size < 1:
            raise ValueError(f"evaluation.view_chunk_size must be >= 1, got {self.view_chunk_size}")
