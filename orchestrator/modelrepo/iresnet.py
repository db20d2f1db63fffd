"""The iresnet backbones of InsightFace's ``arcface_torch`` (r18, r34, r50, r100) in PyTorch.

Written from the published structure so that an ``arcface_torch`` checkpoint (its
``backbone.state_dict()``) loads with ``strict=True``: parameter names and shapes are the
same. Input [N, 3, 112, 112] RGB scaled to (x/255 − 0.5)/0.5; output [N, 512], not
normalised.

    stem      conv3×3 3→64, BN, PReLU                                  112 × 112
    layer1-4  IBasicBlocks; 64, 128, 256, 512 channels; each stage
              halves the size in its first block                       56, 28, 14, 7
    head      BN2d, flatten (512·7·7 = 25088), dropout, fc → 512, BN1d ("features")

An IBasicBlock is BN → conv3×3 → BN → PReLU → conv3×3 (the stride) → BN, added to the
shortcut (conv1×1 with the stride + BN where the shape changes); unlike ResNet's, no
activation follows the sum. Imported only where PyTorch is installed (the ``pth`` extra).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
}
"""IBasicBlocks per stage, by the name arcface_torch gives the backbone."""
WIDTHS = (64, 128, 256, 512)
INPUT_SIZE = 112
HEAD_SIZE = INPUT_SIZE // 2 ** len(WIDTHS)
EMBEDDING_DIM = 512
BN_EPS = 1e-5
_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


def _conv3x3(inputs: int, outputs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inputs, outputs, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, inputs: int, width: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inputs, eps=BN_EPS)
        self.conv1 = _conv3x3(inputs, width)
        self.bn2 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.prelu = nn.PReLU(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn3 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(inputs, width, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(width, eps=BN_EPS),
            )
            if stride != 1 or inputs != width
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


def _stage(inputs: int, width: int, depth: int) -> nn.Sequential:
    rest = (IBasicBlock(width, width, 1) for _ in range(depth - 1))
    return nn.Sequential(IBasicBlock(inputs, width, 2), *rest)


class IResNet(nn.Module):
    """``fp16``: run the convolutional body in float16 on a GPU, as arcface_torch trains it."""

    def __init__(
        self,
        depths: tuple[int, int, int, int],
        *,
        num_features: int = EMBEDDING_DIM,
        dropout: float = 0.0,
        fp16: bool = False,
    ) -> None:
        super().__init__()
        self.fp16 = fp16
        self.conv1 = _conv3x3(3, WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(WIDTHS[0], eps=BN_EPS)
        self.prelu = nn.PReLU(WIDTHS[0])
        self.layer1 = _stage(WIDTHS[0], WIDTHS[0], depths[0])
        self.layer2 = _stage(WIDTHS[0], WIDTHS[1], depths[1])
        self.layer3 = _stage(WIDTHS[1], WIDTHS[2], depths[2])
        self.layer4 = _stage(WIDTHS[2], WIDTHS[3], depths[3])
        self.bn2 = nn.BatchNorm2d(WIDTHS[3], eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(WIDTHS[3] * HEAD_SIZE * HEAD_SIZE, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=BN_EPS)
        # arcface_torch keeps the last BN's scale at 1 (not trained); its shift and statistics are.
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, 112, 112] → the flattened feature map [N, 25088]."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.dropout(torch.flatten(self.bn2(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp16 and x.is_cuda:
            with torch.autocast("cuda", dtype=torch.float16):
                x = self.body(x)
            x = x.float()
        else:
            x = self.body(x)
        return self.features(self.fc(x))


def build(arch: str, *, dropout: float = 0.0, fp16: bool = False) -> IResNet:
    """The backbone arcface_torch calls ``arch`` (r18, r34, r50, r100), randomly initialised."""
    if arch not in DEPTHS:
        raise ValueError(f"unknown iresnet {arch!r}; choose from {', '.join(DEPTHS)}")
    return IResNet(DEPTHS[arch], dropout=dropout, fp16=fp16)


def depths_of(names: Iterable[str]) -> tuple[int, ...]:
    """Blocks per stage in a state dict with these parameter names (0 for a missing stage)."""
    blocks: dict[int, set[int]] = {stage: set() for stage in range(1, len(WIDTHS) + 1)}
    for name in names:
        match = _BLOCK_KEY.match(name)
        if match:
            blocks[int(match[1])].add(int(match[2]))
    return tuple(len(blocks[stage]) for stage in sorted(blocks))


def arch_of(names: Iterable[str]) -> str | None:
    """The arch whose blocks per stage these parameter names have, if any."""
    depths = depths_of(names)
    return next((arch for arch, known in DEPTHS.items() if known == depths), None)
