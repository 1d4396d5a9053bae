"""The scene-specific regression head: encoder feature -> 3D scene coordinate (ACE, METHOD.md s.1).

ACE's head is a per-cell MLP (1x1 convolutions); here it is written with Linear layers over
(N, C) feature rows, so the relocalizer can run it on the selected cells only. Structure: an input
layer, residual blocks of three layers, two more layers and a 4-d homogeneous output
(x, y, z, h); the scene coordinate is (x, y, z) / h' + mean with
h' = softplus_beta(h) + 1/max_scale, clamped to 1/min_scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_SCALE = 4.0   # ACE: s_max
MIN_SCALE = 0.01  # ACE: h' <= 1/s_min = 100


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.fc1(x))
        y = F.relu(self.fc2(y))
        y = F.relu(self.fc3(y))
        return x + y


class SceneHead(nn.Module):
    """Per-cell MLP regressing scene coordinates in the map frame.

    ``num_blocks`` residual blocks of three ``width``-wide layers (ACE: 2 blocks incl. res3 and
    width 512, 9 layers in all).
    """

    def __init__(self, in_dim: int = 64, width: int = 512, num_blocks: int = 2,
                 mean: torch.Tensor | None = None) -> None:
        super().__init__()
        if width < 8 or num_blocks < 1:
            raise ValueError(f"head width {width} / blocks {num_blocks} too small")
        self.in_dim, self.width, self.num_blocks = in_dim, width, num_blocks
        self.input = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(num_blocks))
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.out = nn.Linear(width, 4)
        self.register_buffer("mean", torch.zeros(3) if mean is None else mean.float().reshape(3))
        beta = math.log(2.0) / (1.0 - 1.0 / MAX_SCALE)
        self.beta = beta

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) features -> (N, 3) scene coordinates."""
        return self.decode(self.trunk(features))

    def trunk(self, features: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) features -> (N, width) hidden activations: all the head's matrix work."""
        x = F.relu(self.input(features))
        for block in self.blocks:
            x = block(x)
        x = F.relu(self.fc1(x))
        return F.relu(self.fc2(x))

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, width) hidden activations -> (N, 3) scene coordinates, always in fp32: coordinates in
        metres at bf16's 8-bit mantissa would be quantized to centimetres."""
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            out = self.out(hidden.float())
        h = F.softplus(out[:, 3:4], beta=self.beta) + 1.0 / MAX_SCALE
        h = h.clamp(max=1.0 / MIN_SCALE)
        return out[:, :3] / h + self.mean

    def config(self) -> dict:
        return {"in_dim": self.in_dim, "width": self.width, "num_blocks": self.num_blocks}


class HeadTrunk(nn.Module):
    """The head without its output layer, as a module of its own (what an inference backend compiles)."""

    def __init__(self, head: SceneHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head.trunk(features)
