"""The fast settings on a CUDA GPU: channels-last memory formats, cuDNN autotuning, TF32 matmuls.

Measured on an H200 (I3D RGB training under the CLI, bf16-mixed, batch 8): 0.113 s a step
with PyTorch's defaults, 0.080 s (1.42x) with ``cudnn.benchmark`` and the network in
``channels_last_3d``, within 7% of the bare network's forward+backward
(``benchmarks/model_speed.py``). ``cli.py`` adds ``GPUSettings`` to every run (settings under
``gpu_settings:``); with the Python API add it to the Trainer's callbacks.

On a CUDA device, at ``setup``:

- every 4-D parameter (a 2D convolution's weight) is stored ``channels_last`` and every 5-D
  one (3D) ``channels_last_3d``: per tensor, so a 3D network built from 2D convolutions over
  frames (ConvNet+LSTM) gets both. This happens before the strategy wraps the module in DDP,
  whose gradient buckets copy the parameters' strides;
- each batch's network inputs (the keys of the module's ``input_specs``) get the same layout
  once on the device: the channel axis innermost within each sample, (C, H, W) for 2D and
  (C, T, H, W) for 3D networks by their InputSpec, with the batch and views axes outermost,
  so flattening a test batch's views (``lightning_modules.evaluation.views``) keeps it; test
  views cut on the device (``TestViews``) are replaced by views whose chunks get that layout.
  A channels-last network fed contiguous inputs would convert them in its first convolution
  at every step;
- ``torch.backends.cudnn.benchmark`` is turned on (unless deterministic algorithms are on)
  and the float32 matmul precision set ("high": TF32), both restored at ``teardown``.

On any other device nothing changes, so CPU results are exactly those without it. The
memory format changes strides only: outputs agree within floating-point rounding.
"""

import re
from functools import partial
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from datamodules.test_views import TestViews

MatmulPrecision = Literal["highest", "high", "medium"]

_warned_conv3d = False  # one warning per process, however many fits and tests it runs


def channels_last(tensor: Tensor) -> Tensor:
    """A 4-D tensor in ``channels_last``, a 5-D one in ``channels_last_3d``, others as they are."""
    if tensor.dim() == 4:
        return tensor.contiguous(memory_format=torch.channels_last)
    if tensor.dim() == 5:
        return tensor.contiguous(memory_format=torch.channels_last_3d)
    return tensor


def channels_last_parameters(module: nn.Module) -> None:
    """Every 4-D and 5-D parameter of ``module`` channels-last, in place (the same Parameter
    objects, so optimizers and references stay valid)."""
    for parameter in module.parameters():
        parameter.data = channels_last(parameter.data)


def channels_last_input(x: Tensor, sample_dims: int) -> Tensor:
    """``x`` with its channel axis innermost in memory, shape unchanged.

    Args:
        x: (..., C, *spatial): a batch of samples with ``sample_dims`` axes each, after any
            number of leading axes (batch, views).
        sample_dims: axes of one sample: 3 for 2D networks (C, H, W), 4 for 3D (C, T, H, W).
    Returns:
        ``x`` laid out as (..., *spatial, C): for (N, C, H, W) exactly ``channels_last``,
        for (N, C, T, H, W) ``channels_last_3d``; no copy when it already is.
    """
    channel = x.dim() - sample_dims
    if channel < 0:
        return x
    return x.movedim(channel, -1).contiguous().movedim(-1, channel)


def conv3d_without_cudnn(torch_version: str, cudnn_version: int | None) -> bool:
    """Whether this torch and cuDNN run bf16/fp16 3D convolutions without cuDNN (pytorch#166122).

    torch 2.9.0 turned cuDNN off for half-precision 3D convolutions with kernels larger than
    1 whenever it was built with cuDNN 9.8 or later, i.e. in every CUDA wheel (pytorch#163581,
    the workaround for wrong results of cuDNN 9.8-9.14): ~4x slower and ~17x the memory
    (vol2col). From 2.9.1 the check reads the cuDNN that is loaded and spares 9.15 and later
    (pytorch#167111), but 2.9.1's wheels still bring 9.10 or 9.13 (pytorch#166643); torch 2.10
    bundles cuDNN 9.15.1 (pytorch#169412).

    Args:
        torch_version: ``torch.__version__``, e.g. "2.9.0+cu128".
        cudnn_version: ``torch.backends.cudnn.version()`` (e.g. 91002 for 9.10.2); None without cuDNN.
    """
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", torch_version)
    if cudnn_version is None or match is None:
        return False
    release = tuple(int(part) for part in match.groups())
    if release == (2, 9, 0):  # it checked the cuDNN it was built with: a newer one loaded does not help
        return cudnn_version >= 90800
    return release > (2, 9, 0) and 90800 <= cudnn_version < 91500


def warn_conv3d_without_cudnn(module: nn.Module, precision: str) -> bool:
    """Warn once when ``module`` has 3D convolutions that this torch runs without cuDNN under
    ``precision`` (the Trainer's); True when it warned."""
    global _warned_conv3d
    half = "16" in str(precision)
    has_3d = any(parameter.dim() == 5 for parameter in module.parameters())
    cudnn = torch.backends.cudnn.version()
    if _warned_conv3d or not (half and has_3d and conv3d_without_cudnn(torch.__version__, cudnn)):
        return False
    _warned_conv3d = True
    rank_zero_warn(
        f"torch {torch.__version__} with cuDNN {cudnn} runs {precision} 3D convolutions without cuDNN "
        "(pytorch#166122: about 4x slower and many times the memory). Upgrade torch: "
        "`pip install -U torch` (2.10 and later bundle cuDNN 9.15+); from torch 2.9.1 on, a cuDNN of "
        "9.15 or later also fixes it (`pip install -U nvidia-cudnn-cu12`, or -cu13, matching torch's CUDA)")
    return True


class GPUSettings(pl.Callback):
    """Channels-last networks and inputs, cuDNN autotuning and TF32 matmuls on CUDA devices;
    nothing elsewhere (see the module docstring).

    Args:
        channels_last: 2D convolutions' weights and the inputs of 2D networks in
            ``channels_last``, those of 3D ones in ``channels_last_3d``.
        cudnn_benchmark: let cuDNN time its algorithms for each new input shape and keep the
            fastest (``torch.backends.cudnn.benchmark``); skipped when deterministic algorithms
            are on (``Trainer(deterministic=True)``).
        float32_matmul_precision: ``torch.set_float32_matmul_precision``: "high" lets float32
            matrix products use TF32; "highest" is PyTorch's default (full float32).
    """

    def __init__(self, channels_last: bool = True, cudnn_benchmark: bool = True,
                 float32_matmul_precision: MatmulPrecision = "high") -> None:
        self.channels_last, self.cudnn_benchmark = channels_last, cudnn_benchmark
        self.float32_matmul_precision = float32_matmul_precision
        self.input_dims: dict[str, int] = {}
        self._restore: tuple[bool, str] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type != "cuda":
            return
        self._restore = (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision())
        if self.cudnn_benchmark:
            if torch.are_deterministic_algorithms_enabled() or torch.backends.cudnn.deterministic:
                rank_zero_info("deterministic algorithms are on: cudnn.benchmark stays off")
            else:
                torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision(self.float32_matmul_precision)
        if self.channels_last:
            channels_last_parameters(pl_module)
            specs = getattr(pl_module, "input_specs", None) or {}
            self.input_dims = {key: spec.dims + 1 for key, spec in specs.items() if spec is not None}
        warn_conv3d_without_cudnn(pl_module, trainer.precision)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._restore is not None:
            torch.backends.cudnn.benchmark = self._restore[0]
            torch.set_float32_matmul_precision(self._restore[1])
            self._restore = None
        self.input_dims = {}

    def inputs_channels_last(self, batch: Any) -> None:
        """The network inputs of a dict batch (as the datamodules give) channels-last, in place."""
        if not isinstance(batch, dict):
            return
        for key, dims in self.input_dims.items():
            if isinstance(batch.get(key), Tensor):
                batch[key] = channels_last_input(batch[key], dims)
            elif isinstance(batch.get(key), TestViews):  # cut chunk by chunk: each chunk laid out
                batch[key] = batch[key].with_layout(partial(channels_last_input, sample_dims=dims))

    # After the batch reaches the device, before the step sees it (the same dict).

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.inputs_channels_last(batch)

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        self.inputs_channels_last(batch)

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                            batch_idx: int, dataloader_idx: int = 0) -> None:
        self.inputs_channels_last(batch)

    def on_predict_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                               batch_idx: int, dataloader_idx: int = 0) -> None:
        self.inputs_channels_last(batch)
