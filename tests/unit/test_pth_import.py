"""`facerec models import-pth`: arcface_torch checkpoints become arcface versions that compute the same.

The real checkpoints cannot be downloaded: random iresnets stand in for them, saved as
arcface_torch saves its backbone. Real aligned crops are in tests/integration/test_import_pth.py.
"""

import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from orchestrator.cli.main import main
from orchestrator.modelrepo import pth
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.importer import ModelImportError
from orchestrator.modelrepo.records import read_records
from orchestrator.modelrepo.repository import MODEL_FILE, TARGETS
from orchestrator.pipeline.vision.align import embedder_input
from tests.support.stores import linked_copy

try:
    import torch
except ImportError:  # the pth extra; `make` installs it, so under CI this is a failure
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("PyTorch (the pth extra) is not installed", allow_module_level=True)

from orchestrator.modelrepo import iresnet
from tests.support.arcface_torch import random_backbone, save_like_arcface_torch, torch_input

pytestmark = pytest.mark.unit

BATCH = 6


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """[N, 112, 112, 3] uint8: blocky random images with some noise, not faces."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, (BATCH, 14, 14, 3)).repeat(8, axis=1).repeat(8, axis=2)
    return np.clip(blocks + rng.normal(0, 8, blocks.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def backbone(images: np.ndarray) -> iresnet.IResNet:
    return random_backbone("r18", seed=13, images=torch_input(images))


@pytest.fixture
def store(model_store: ModelStore, tmp_path: Path) -> ModelStore:
    return linked_copy(model_store, tmp_path / "data" / "models")


def embed_onnx(path: Path, crops: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([ARCFACE.outputs[0].name], {ARCFACE.inputs[0].name: embedder_input(crops)})[0]


def embed_torch(net: iresnet.IResNet, crops: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch_input(crops)).numpy()


def test_iresnet_has_arcface_torchs_parameter_names_and_shapes() -> None:
    net = iresnet.build("r18")
    shapes = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 3, 3)
    assert shapes["prelu.weight"] == (64,)
    assert shapes["layer1.0.bn1.weight"] == (64,)
    assert shapes["layer1.0.conv2.weight"] == (64, 64, 3, 3)
    assert shapes["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["layer2.0.downsample.1.running_var"] == (128,)
    assert shapes["layer4.1.bn3.bias"] == (512,)
    assert shapes["bn2.weight"] == (512,)
    assert shapes["fc.weight"] == (512, 512 * 7 * 7)
    assert shapes["features.running_mean"] == (512,)
    # Only the first block of each stage changes the shape, so only it has a shortcut conv.
    assert sorted({n.split(".downsample")[0] for n in shapes if ".downsample." in n}) == [
        "layer1.0",
        "layer2.0",
        "layer3.0",
        "layer4.0",
    ]
    assert sum(t.numel() for t in net.state_dict().values() if t.is_floating_point()) > 24_000_000
    assert not net.features.weight.requires_grad


@pytest.mark.parametrize("arch", list(iresnet.DEPTHS))
def test_each_arch_is_told_apart_by_its_blocks(arch: str) -> None:
    names = iresnet.build(arch).state_dict().keys()
    assert iresnet.depths_of(names) == iresnet.DEPTHS[arch]
    assert iresnet.arch_of(names) == arch
    assert tuple(iresnet.DEPTHS) == pth.ARCHS


def test_a_batch_of_any_size_gives_one_embedding_each(backbone: iresnet.IResNet, images: np.ndarray) -> None:
    one = embed_torch(backbone, images[:1])
    all_of_them = embed_torch(backbone, images)
    assert all_of_them.shape == (BATCH, 512)
    np.testing.assert_allclose(one[0], all_of_them[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_an_imported_checkpoint_computes_what_pytorch_computes(
    store: ModelStore, backbone: iresnet.IResNet, images: np.ndarray, tmp_path: Path, fp16: bool
) -> None:
    name = "ms1mv3_arcface_r18_fp16.pth" if fp16 else "backbone.pth"
    checkpoint = save_like_arcface_torch(backbone, tmp_path / name, fp16=fp16)
    before = store.versions(ARCFACE.name)

    args = ["models", "import-pth", str(checkpoint), "--arch", "r18", "--data-dir", str(tmp_path / "data")]
    assert main(args) == 0

    (version,) = set(store.versions(ARCFACE.name)) - set(before)
    # The reference is the network before it was saved: in half precision it lost some bits.
    expected = embed_torch(backbone, images)
    for target in TARGETS:
        got = embed_onnx(store.repository(target) / ARCFACE.name / str(version) / MODEL_FILE, images)
        cosines = pth.cosines(expected, got)
        assert cosines.min() >= (0.999 if fp16 else 0.9999), cosines
        record = read_records(store.repository(target) / ARCFACE.name)[version]
        assert record.source == "imported" and record.origin == f"{name} (arcface_torch r18)"
        assert record.normalization == "127.5,127.5,rgb"
    # Different faces, different embeddings: agreement above is not that of constant outputs.
    spread = pth.cosines(expected[:-1], expected[1:])
    assert spread.max() < 0.99, spread


def test_an_fp16_checkpoint_loads_into_float32(backbone: iresnet.IResNet, tmp_path: Path) -> None:
    checkpoint = save_like_arcface_torch(backbone, tmp_path / "half.pth", fp16=True)
    assert torch.load(checkpoint, weights_only=True)["fc.weight"].dtype == torch.float16
    loaded = pth.load_backbone(checkpoint, "r18")
    assert all(t.dtype == torch.float32 for t in loaded.state_dict().values() if t.is_floating_point())
    assert not loaded.training


def test_a_ddp_prefixed_or_wrapped_state_dict_loads(backbone: iresnet.IResNet, tmp_path: Path) -> None:
    state = {f"module.{name}": t for name, t in backbone.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 20}, tmp_path / "wrapped.pth")
    loaded = pth.load_backbone(tmp_path / "wrapped.pth", "r18")
    torch.testing.assert_close(loaded.fc.weight, backbone.fc.weight)


def test_the_wrong_arch_names_the_right_one(backbone: iresnet.IResNet, tmp_path: Path) -> None:
    checkpoint = save_like_arcface_torch(backbone, tmp_path / "r18.pth")
    with pytest.raises(ModelImportError, match=r"is an iresnet r18, not r50: pass --arch r18"):
        pth.load_backbone(checkpoint, "r50")


def test_a_checkpoint_that_is_not_an_iresnet_is_refused_before_anything_is_written(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = store.versions(ARCFACE.name)
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled-module.pth")  # a whole model, not weights
    (tmp_path / "text.pth").write_text("not a checkpoint")
    widened = backbone_state_with_wider_head()
    torch.save(widened, tmp_path / "r18-1024.pth")
    args = ["--arch", "r18", "--data-dir", str(tmp_path / "data")]

    for name, says in [
        ("other.pth", "not an arcface_torch iresnet"),
        ("pickled-module.pth", "not a PyTorch checkpoint of tensors"),
        ("text.pth", "not a PyTorch checkpoint of tensors"),
        ("r18-1024.pth", "does not fit iresnet r18"),
        ("missing.pth", "No such file"),
    ]:
        assert main(["models", "import-pth", str(tmp_path / name), *args]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (name, err)
    assert store.versions(ARCFACE.name) == before


def backbone_state_with_wider_head() -> dict[str, torch.Tensor]:
    state = iresnet.build("r18").state_dict()
    state["fc.weight"] = torch.zeros(1024, 512 * 7 * 7)
    return state


def test_without_pytorch_the_command_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules: `import torch` fails and find_spec finds nothing, as without the extra.
    monkeypatch.setitem(sys.modules, "torch", None)
    args = ["models", "import-pth", "x.pth", "--arch", "r18", "--data-dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "needs PyTorch" in err and "pip install -e '.[pth]'" in err
    assert not (tmp_path / "models").exists()
