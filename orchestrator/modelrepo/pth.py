"""``facerec models import-pth``: an InsightFace ``arcface_torch`` checkpoint as the next arcface version.

arcface_torch saves ``backbone.state_dict()`` (float16 tensors in some releases trained in
half precision). The checkpoint is loaded as weights only (no code in it runs) into this
project's own iresnet with ``strict`` names and shapes, converted to float32, exported to
ONNX (opset 17, dynamic batch), checked against PyTorch on a batch, and then added like any
imported ONNX, with arcface_torch's normalisation prepended: RGB, (x/255 − 0.5)/0.5, which
is (x − 127.5)/127.5.

PyTorch is the optional ``pth`` extra; this module imports it only when a command runs.
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort

from orchestrator.modelrepo.batching import BATCH_DIM
from orchestrator.modelrepo.fetch import ModelStore, sha256_file
from orchestrator.modelrepo.importer import ModelImportError, add_version
from orchestrator.modelrepo.variants import Normalization

if TYPE_CHECKING:
    import torch

    from orchestrator.modelrepo.iresnet import IResNet

ARCHS = ("r18", "r34", "r50", "r100")
"""What ``--arch`` takes; the same keys as ``iresnet.DEPTHS`` (which needs PyTorch to import)."""
ARCFACE_TORCH_NORMALIZATION = Normalization(mean=127.5, std=127.5, channels="rgb")
OPSET = 17
"""Within what ONNX Runtime here and Triton 2.51's onnxruntime backend (GPU) both load."""
MIN_COSINE = 0.9999
"""The exported graph must give PyTorch's embeddings at least this closely, row by row."""
INSTALL_HINT = "install the `pth` extra: pip install -e '.[pth]' in the project (PyTorch 2.13.0)"
_INPUT, _OUTPUT = "input", "embedding"


def require_torch() -> None:
    """Raise a :class:`ModelImportError` that says how to install PyTorch when it is missing."""
    if importlib.util.find_spec("torch") is None:
        raise ModelImportError(f"importing a .pth checkpoint needs PyTorch: {INSTALL_HINT}")


def _state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    import torch

    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not loaded:
        raise ModelImportError(f"{path.name}: not a state dict (arcface_torch saves backbone.state_dict())")
    state: dict[str, torch.Tensor] = {}
    for name, value in loaded.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ModelImportError(f"{path.name}: not a state dict ({name!r} is not a named tensor)")
        # Saved from a DistributedDataParallel wrapper rather than the backbone itself.
        name = name.removeprefix("module.")
        state[name] = value.float() if value.is_floating_point() else value
    return state


def load_backbone(path: Path, arch: str) -> IResNet:
    """The checkpoint at ``path`` in an iresnet ``arch``, in float32 and eval mode."""
    require_torch()
    import torch

    from orchestrator.modelrepo import iresnet

    try:
        # weights_only: a checkpoint is a pickle, and only tensors and containers may load.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise ModelImportError(f"{path}: {error.strerror or error}") from error
    except Exception as error:  # pickle, zip and torch's own errors alike: not a checkpoint
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelImportError(f"{path.name}: not a PyTorch checkpoint of tensors ({reason})") from error
    state = _state_dict(loaded, path)
    found = iresnet.arch_of(state)
    if found is None:
        raise ModelImportError(
            f"{path.name}: not an arcface_torch iresnet (blocks per stage {iresnet.depths_of(state)}; "
            f"known: {', '.join(f'{a} {d}' for a, d in iresnet.DEPTHS.items())})"
        )
    if found != arch:
        raise ModelImportError(f"{path.name} is an iresnet {found}, not {arch}: pass --arch {found}")
    backbone = iresnet.build(arch)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelImportError(f"{path.name} does not fit iresnet {arch}: {error}") from error
    return backbone.eval()


def export_onnx(backbone: IResNet) -> onnx.ModelProto:
    """``backbone`` as an ONNX graph [batch, 3, 112, 112] → [batch, 512]."""
    import torch

    from orchestrator.modelrepo.iresnet import INPUT_SIZE

    example = torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE)
    with tempfile.TemporaryDirectory() as work, warnings.catch_warnings():
        # The TorchScript exporter: deprecated in favour of the torch.export one, which needs
        # onnxscript and writes opset 18 or later; this plain CNN needs neither.
        warnings.simplefilter("ignore", DeprecationWarning)
        target = Path(work) / "backbone.onnx"
        torch.onnx.export(
            backbone,
            (example,),
            str(target),
            dynamo=False,
            input_names=[_INPUT],
            output_names=[_OUTPUT],
            dynamic_axes={_INPUT: {0: BATCH_DIM}, _OUTPUT: {0: BATCH_DIM}},
            opset_version=OPSET,
        )
        return onnx.load(str(target))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [N, D] arrays → [N]."""
    return np.einsum("nd,nd->n", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check_export(backbone: IResNet, model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    """Embed ``images`` [N, 3, 112, 112] (the model's own normalisation) both ways; the cosines [N].

    Raises :class:`ModelImportError` if a row agrees less than :data:`MIN_COSINE`.
    """
    import torch

    with torch.inference_mode():
        expected = backbone(torch.from_numpy(images)).numpy()
    if not np.isfinite(expected).all():
        raise ModelImportError("the checkpoint's own output (in PyTorch) is not finite; nothing was written")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got: Any = session.run([_OUTPUT], {_INPUT: images})[0]
    agreement = cosines(expected, got)
    if not agreement.min() >= MIN_COSINE:
        raise ModelImportError(
            f"the ONNX export differs from PyTorch (cosine {agreement.min():.6f} < {MIN_COSINE}); "
            "nothing was written"
        )
    return agreement


def import_checkpoint(store: ModelStore, path: Path, arch: str) -> int:
    """Add the arcface_torch checkpoint at ``path`` as the next ``arcface`` version; returns it."""
    backbone = load_backbone(path, arch)
    model = export_onnx(backbone)
    probe = np.random.default_rng(0).uniform(-1, 1, (4, 3, 112, 112)).astype(np.float32)
    check_export(backbone, model, probe)
    return add_version(
        store,
        model,
        ARCFACE_TORCH_NORMALIZATION,
        origin=f"{path.name} (arcface_torch {arch})",
        sha256=sha256_file(path),
    )
