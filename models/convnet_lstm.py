"""ConvNet+LSTM: the I3D paper's first baseline (Carreira & Zisserman 2017, Table 1).

A 2D network sees each frame; one LSTM layer with 512 hidden units reads the per-frame
features in order; a classifier scores every time step. The paper: Inception-V1 features
after the last average pool, frames sub-sampled 1 in 5 from 25 fps, cross-entropy on the
outputs at all time steps in training, the last step's output at test. It uses a
batch-normalised LSTM (Cooijmans et al.); this is PyTorch's plain ``nn.LSTM``.
"""

from dataclasses import replace
from typing import Literal

from torch import Tensor, nn

from models.adapt import linear_classifier, replacement_classifier
from models.input_spec import InputSpec
from models.stream2d import GoogLeNetStream, ResNetStream


class ConvNetLSTM(nn.Module):
    """Per-frame 2D features -> LSTM -> per-step logits -> one score per clip.

    Args:
        num_classes: classes of the classifier.
        backbone: the 2D network, ``"googlenet"`` (Inception-V1 with batch norm, the
            paper's) or ``"resnet18"`` ... ``"resnet152"``.
        weights: the backbone's weights: None (random), a local torchvision state-dict
            file or a torchvision weights name (see `models.weights.get_state_dict`).
        hidden_size: LSTM hidden units (512 in the paper).
        dropout: dropout probability before the classifier.
        readout: ``"mean"`` averages the per-step logits; ``"last"`` takes the last
            step's, as the paper does at test.
        frames: frames per clip declared in `input_spec` (25 in the paper's training).
        input_size: square crop side declared in `input_spec` (the data crops to it; the
            backbone pools globally, so any size runs).
    """

    def __init__(self, num_classes: int = 400, backbone: str = "googlenet", weights: str | None = None,
                 hidden_size: int = 512, dropout: float = 0.5, readout: Literal["mean", "last"] = "mean",
                 frames: int = 25, input_size: int = 224) -> None:
        super().__init__()
        if backbone == "googlenet":
            stream = GoogLeNetStream(1, weights=weights)
        elif backbone.startswith("resnet") and backbone[6:].isdigit():
            stream = ResNetStream(1, depth=int(backbone[6:]), weights=weights)
        else:
            raise ValueError(f"backbone must be 'googlenet' or 'resnet<depth>', got {backbone!r}")
        if readout not in ("mean", "last"):
            raise ValueError(f"readout must be 'mean' or 'last', got {readout!r}")
        self.input_spec: InputSpec = replace(stream.input_spec, dims=3, frames=frames, size=input_size)
        self.readout = readout
        self.frame_features = stream.features  # the stream's own classifier is dropped
        self.lstm = nn.LSTM(stream.num_features, hidden_size, batch_first=True)
        self.num_features = hidden_size
        self.dropout = nn.Dropout(dropout)
        self.fc = linear_classifier(hidden_size, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """N x 3 x T x H x W clip -> N x T x hidden_size LSTM outputs."""
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)  # N*T x 3 x 224 x 224
        features = self.frame_features(frames)              # N*T x 1024
        outputs, _ = self.lstm(features.view(n, t, -1))     # N x T x 512
        return outputs

    def forward_head(self, features: Tensor, pre_logits: bool = False, *, per_time: bool = False) -> Tensor:
        """LSTM outputs -> N x num_classes (or N x num_classes x T with `per_time`).

        ``pre_logits``: the same readout of the LSTM outputs without the classifier,
        N x hidden_size; the classifier is linear, so it gives the logits from them.
        """
        x = self.dropout(features)  # N x T x hidden_size
        if not pre_logits:
            x = self.fc(x)  # the classifier at every step, then the readout, as the paper
        x = x.transpose(1, 2)  # N x num_classes x T
        if per_time:
            return x
        return x.mean(dim=2) if self.readout == "mean" else x[:, :, -1]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = replacement_classifier(self, num_classes)
