"""Stand-ins for arcface_torch checkpoints: random iresnets, saved the way arcface_torch saves them.

The real checkpoints cannot be downloaded here; a randomly initialised backbone whose batch
norm statistics come from real inputs exercises the same load, export and serving path.
Import this module only where PyTorch is installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from orchestrator.modelrepo import iresnet


def torch_input(crops: np.ndarray) -> torch.Tensor:
    """[N, 112, 112, 3] uint8 RGB crops → [N, 3, 112, 112] float32, (x/255 − 0.5)/0.5 as arcface_torch."""
    scaled = (crops.astype(np.float32) / 255.0 - 0.5) / 0.5
    return torch.from_numpy(scaled.transpose(0, 3, 1, 2).copy())


def random_backbone(arch: str, seed: int, images: torch.Tensor) -> iresnet.IResNet:
    """A random iresnet in eval mode, its batch norms' statistics taken from ``images``.

    Scales, shifts and PReLU slopes are random too, so that no layer is the identity.
    """
    torch.manual_seed(seed)
    net = iresnet.build(arch)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            if norm is not net.features:  # arcface_torch keeps that scale at 1
                norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.1)
            # momentum None: the running statistics become the average over the batches seen.
            norm.momentum = None
            norm.reset_running_stats()
        for prelu in (m for m in net.modules() if isinstance(m, nn.PReLU)):
            prelu.weight.uniform_(0.0, 0.5)
        net.train()
        for batch in images.split(8):
            if len(batch) > 1:
                net(batch)
    for norm in norms:
        norm.momentum = 0.1
    return net.eval()


def save_like_arcface_torch(net: iresnet.IResNet, path: Path, *, fp16: bool = False) -> Path:
    """``torch.save(backbone.state_dict(), path)``; ``fp16``: its float tensors in half precision."""
    state = net.state_dict()
    if fp16:
        state = {name: t.half() if t.is_floating_point() else t for name, t in state.items()}
    torch.save(state, path)
    return path
