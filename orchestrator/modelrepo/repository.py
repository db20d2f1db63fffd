"""Triton model repositories for both targets, generated from the one catalog.

``cpu``: Python backend running ONNX Runtime on the CPU (what runs here and in CI), and
``face_chain``, which analyses a whole image in one call (``chain_config``).
``gpu``: onnxruntime backend on ``KIND_GPU`` with the TensorRT accelerator in FP16, one
optimisation profile per model, an engine cache and warm-up at both ends of the profile
(what runs in production; ``tensorrt.py`` says why). Every config is built as Triton's own
``ModelConfig`` protobuf, so what is written always parses.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from orchestrator.modelrepo.catalog import (
    ARCFACE,
    CHAIN_CPU_INSTANCES,
    CHAIN_MAX_BATCH_SIZE,
    FACE_CHAIN,
    FACE_DETECTOR,
    FACE_LANDMARKS,
    ModelSpec,
)
from orchestrator.modelrepo.tensorrt import TRT_ENGINE_CACHE as TRT_ENGINE_CACHE
from orchestrator.modelrepo.tensorrt import accelerator_parameters, batch_profile

Target = Literal["cpu", "gpu"]
TARGETS: tuple[Target, ...] = ("cpu", "gpu")
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"


def _dtype(name: str) -> int:
    return int(mc.DataType.Value(name))


def model_config(spec: ModelSpec, target: Target, versions: Iterable[int] = (1,)) -> mc.ModelConfig:
    config = mc.ModelConfig(name=spec.name, max_batch_size=spec.max_batch_size)
    for tensor in spec.inputs:
        config.input.add(name=tensor.name, data_type=_dtype(tensor.dtype), dims=tensor.dims)
    for tensor in spec.outputs:
        config.output.add(name=tensor.name, data_type=_dtype(tensor.dtype), dims=tensor.dims)
    config.version_policy.specific.versions.extend(sorted(versions))

    batching = config.dynamic_batching
    batching.preferred_batch_size.extend(spec.preferred_batch_sizes)
    batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    _bounded_queue(batching, spec)

    if target == "cpu":
        config.backend = "python"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=spec.cpu_instances)
        # Parallelism comes from instances and from the three models running side by side.
        config.parameters["intra_op_threads"].string_value = "1"
        config.parameters["graph_optimization"].string_value = spec.cpu_graph_optimization
    else:
        config.platform = "onnxruntime_onnx"
        config.backend = "onnxruntime"
        config.default_model_filename = MODEL_FILE
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=1)
        accel = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accel.parameters.update(accelerator_parameters(spec))
        # The engine is built as the model loads; running both ends of its profile before
        # Triton reports ready proves the whole range works, not only the first batch size.
        profile = batch_profile(spec)
        for batch in sorted({profile.min, profile.max}):
            warmup = config.model_warmup.add(name=f"{spec.name}_b{batch}", batch_size=batch)
            for tensor in spec.inputs:
                warmup.inputs[tensor.name].data_type = _dtype(tensor.dtype)
                warmup.inputs[tensor.name].dims.extend(tensor.dims)
                warmup.inputs[tensor.name].random_data = True
    return config


def _bounded_queue(batching: mc.ModelDynamicBatching, spec: ModelSpec) -> None:
    # A bounded queue that rejects: overload becomes UNAVAILABLE (HTTP 503), never a hang.
    policy = batching.default_queue_policy
    policy.max_queue_size = spec.max_queue_size
    policy.timeout_action = mc.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = spec.queue_timeout_us
    policy.allow_timeout_override = True


CHAIN_FACE_COLUMNS = 152
"""``orchestrator.pipeline.vision.chain.FACE_COLUMNS`` (that module needs OpenCV; this one not)."""


def chain_config() -> mc.ModelConfig:
    """``face_chain``: an encoded image and its options (JSON) in, its faces out.

    CPU target only: its stub needs OpenCV, which Triton's GPU image lacks (the GPU
    deployments run the orchestrator with ``FACEREC_TRITON__CHAIN=false``). The detector
    and landmark model run inside the chain's stub; the embedder is a BLS call, so rollouts
    and batching across requests stay Triton's.
    """
    config = mc.ModelConfig(name=FACE_CHAIN, backend="python", max_batch_size=CHAIN_MAX_BATCH_SIZE)
    config.input.add(name="image", data_type=_dtype("TYPE_STRING"), dims=[1])
    config.input.add(name="options", data_type=_dtype("TYPE_STRING"), dims=[1])
    outputs = {
        "faces": ("TYPE_FP32", [-1, CHAIN_FACE_COLUMNS]),
        "crops": ("TYPE_UINT8", [-1, 112, 112, 3]),
        "embeddings": ("TYPE_FP32", [-1, -1]),
        "size": ("TYPE_INT32", [2]),
        "timings": ("TYPE_FP32", [5]),
    }
    for name, (dtype, dims) in outputs.items():
        config.output.add(name=name, data_type=_dtype(dtype), dims=dims)
    config.version_policy.specific.versions.append(1)
    # No queue delay: images wait for a busy instance, never for company.
    _bounded_queue(config.dynamic_batching, ARCFACE)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=CHAIN_CPU_INSTANCES)
    # The stub can call these through Triton instead (BLS), as a GPU build would.
    config.parameters["in_process"].string_value = f"{FACE_DETECTOR.name},{FACE_LANDMARKS.name}"
    for role, spec in (("detector", FACE_DETECTOR), ("landmarks", FACE_LANDMARKS), ("embedder", ARCFACE)):
        config.parameters[role].string_value = spec.name
        config.parameters[f"{spec.name}.input"].string_value = spec.input.name
        config.parameters[f"{spec.name}.max_batch_size"].string_value = str(spec.max_batch_size)
    return config


def chain_files() -> dict[str, str]:
    """The files of a ``face_chain`` version directory: its ``model.py`` and the image code
    it imports, copied from this package (the stub cannot import the orchestrator's)."""
    files = {"model.py": _backend_source("face_chain.py")}
    package = resources.files("orchestrator")
    for relative in CHAIN_CODE:
        files[relative] = package.joinpath(*relative.split("/")[1:]).read_text()
    return files


CHAIN_CODE = (
    "orchestrator/__init__.py",
    "orchestrator/core/__init__.py",
    "orchestrator/core/errors.py",
    "orchestrator/pipeline/__init__.py",
    *(
        f"orchestrator/pipeline/vision/{name}.py"
        for name in ("__init__", "align", "chain", "decode", "detect", "faces", "landmarks")
    ),
)


def render(config: mc.ModelConfig) -> str:
    return str(text_format.MessageToString(config))


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def _read_config(model_dir: Path) -> mc.ModelConfig:
    path = model_dir / CONFIG_FILE
    try:
        return parse(path.read_text())
    except text_format.ParseError as error:
        raise ValueError(f"{path} is not a Triton model config: {error}") from error


def version_dirs(model_dir: Path) -> list[int]:
    """The version directories in ``model_dir``, ascending."""
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def read_version_policy(model_dir: Path) -> list[str]:
    """The versions a Triton started on this repository would load, ascending.

    ``specific`` lists them; ``all`` and ``latest`` (Triton's default) are resolved against
    the version directories present.
    """
    policy = _read_config(model_dir).version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "specific":
        versions = sorted(set(policy.specific.versions))
    elif choice == "all":
        versions = version_dirs(model_dir)
    else:
        latest = policy.latest.num_versions if choice == "latest" else 1
        versions = version_dirs(model_dir)[-latest:]
    return [str(v) for v in versions]


def write_version_policy(model_dir: Path, versions: Iterable[str | int]) -> None:
    """Pin ``model_dir/config.pbtxt`` to exactly ``versions``, leaving the rest of it as it was.

    A restarted Triton loads only what this file says, so it is kept equal to what is live.
    The file is replaced atomically: a crash leaves the old config or the new, never a torn
    one. A version without its directory is refused, since Triton would fail to load the model.
    """
    wanted = sorted({int(v) for v in versions})
    if not wanted:
        raise ValueError(f"{model_dir.name}: a version policy needs at least one version")
    missing = [v for v in wanted if not (model_dir / str(v)).is_dir()]
    if missing:
        raise ValueError(f"{model_dir.name}: no version directory for {missing} in {model_dir}")
    config = _read_config(model_dir)
    config.version_policy.Clear()
    config.version_policy.specific.versions.extend(wanted)
    replace_file(model_dir / CONFIG_FILE, render(config))


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` by rename, so readers see the old file or the new, whole.

    The rename replaces only this directory entry: if ``path`` is a hard link shared with
    another repository, the other keeps its content.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            # mkstemp makes the file 0600; Triton may run as another user that must read it.
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _backend_source(name: str) -> str:
    return (resources.files("orchestrator.modelrepo") / "triton_backend" / name).read_text()


def backend_model_source() -> str:
    """The Python-backend ``model.py`` shared by every CPU model."""
    return _backend_source("model.py")


def write_chain(root: Path) -> None:
    """``root/face_chain/``: its config and version 1 with the code it runs."""
    model_dir = root / FACE_CHAIN
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / CONFIG_FILE).write_text(render(chain_config()))
    for relative, text in chain_files().items():
        path = model_dir / "1" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_repository(
    root: Path,
    target: Target,
    specs: Iterable[ModelSpec],
    weights: Mapping[str, Mapping[int, Path]],
) -> None:
    """Write ``root/<model>/config.pbtxt`` and ``root/<model>/<version>/`` for every spec.

    ``weights[model][version]`` is the batch-dynamic ONNX file of that version.
    """
    model_py = backend_model_source()
    for spec in specs:
        versions = weights[spec.name]
        model_dir = root / spec.name
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(render(model_config(spec, target, versions)))
        for version, onnx_file in versions.items():
            version_dir = model_dir / str(version)
            version_dir.mkdir(exist_ok=True)
            link_or_copy(onnx_file, version_dir / MODEL_FILE)
            if target == "cpu":
                (version_dir / "model.py").write_text(model_py)
    if target == "cpu":
        write_chain(root)


def write_configs(root: Path) -> None:
    """Write only the config.pbtxt files of both targets (the committed, reviewable copy)."""
    from orchestrator.modelrepo.catalog import DEFAULT_MODELS

    for target in TARGETS:
        for spec in DEFAULT_MODELS:
            model_dir = root / target / spec.name
            model_dir.mkdir(parents=True, exist_ok=True)
            (model_dir / "config.pbtxt").write_text(render(model_config(spec, target)))
    (root / "cpu" / FACE_CHAIN).mkdir(parents=True, exist_ok=True)
    (root / "cpu" / FACE_CHAIN / CONFIG_FILE).write_text(render(chain_config()))


if __name__ == "__main__":
    import sys

    write_configs(Path(sys.argv[1] if len(sys.argv) > 1 else "model_repository"))
