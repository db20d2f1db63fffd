"""Both repository targets come from one catalog and parse as Triton's ModelConfig."""

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.repository import (
    TARGETS,
    TRT_ENGINE_CACHE,
    model_config,
    parse,
    render,
    write_configs,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def tensors(config: mc.ModelConfig) -> list[tuple[str, str, int, tuple[int, ...]]]:
    return [("in", t.name, t.data_type, tuple(t.dims)) for t in config.input] + [
        ("out", t.name, t.data_type, tuple(t.dims)) for t in config.output
    ]


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda s: s.name)
def test_cpu_and_gpu_configs_parse_and_agree_on_tensors(spec) -> None:
    cpu, gpu = (parse(render(model_config(spec, target))) for target in TARGETS)
    assert tensors(cpu) == tensors(gpu) != []
    assert cpu.max_batch_size == gpu.max_batch_size == spec.max_batch_size > 1
    for config in (cpu, gpu):
        queue = config.dynamic_batching.default_queue_policy
        assert queue.max_queue_size > 0 and queue.timeout_action == mc.ModelQueuePolicy.REJECT
    assert cpu.backend == "python" and cpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert gpu.backend == "onnxruntime" and gpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    trt = gpu.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert trt.parameters["trt_engine_cache_enable"] == "1"
    warm = gpu.model_warmup[0].inputs[spec.input.name]
    assert tuple(warm.dims) == spec.input.dims and warm.random_data


def gpu_config(spec) -> mc.ModelConfig:
    return parse(render(model_config(spec, "gpu")))


def tensorrt(config: mc.ModelConfig) -> dict[str, str]:
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    return dict(accelerator.parameters)


def profile_shapes(text: str) -> dict[str, tuple[int, ...]]:
    """``input:1x3x112x112,other:1x4`` as ONNX Runtime's TensorRT provider reads it."""
    shapes = {}
    for item in text.split(","):
        name, _, dims = item.rpartition(":")
        shapes[name] = tuple(int(d) for d in dims.split("x"))
    return shapes


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda s: s.name)
def test_every_gpu_model_has_one_profile_from_batch_1_to_its_max_batch_size(spec) -> None:
    config = gpu_config(spec)
    parameters = tensorrt(config)
    inputs = {t.name: tuple(t.dims) for t in config.input}
    batches = {}
    for end in ("min", "opt", "max"):
        shapes = profile_shapes(parameters[f"trt_profile_{end}_shapes"])
        # The provider refuses to load when a dynamic input has no profile.
        assert shapes.keys() == inputs.keys(), end
        assert {name: dims[1:] for name, dims in shapes.items()} == inputs, end
        (batches[end],) = {dims[0] for dims in shapes.values()}
    assert batches["min"] == 1
    assert batches["max"] == config.max_batch_size
    assert batches["opt"] in config.dynamic_batching.preferred_batch_size
    assert batches["min"] <= batches["opt"] <= batches["max"]


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda s: s.name)
def test_gpu_warmup_runs_both_ends_of_the_profile(spec) -> None:
    config = gpu_config(spec)
    assert sorted(w.batch_size for w in config.model_warmup) == [1, config.max_batch_size]
    for warmup in config.model_warmup:
        assert {name: tuple(i.dims) for name, i in warmup.inputs.items()} == {
            t.name: tuple(t.dims) for t in config.input
        }


def test_every_gpu_model_caches_its_engines_apart() -> None:
    parameters = [tensorrt(gpu_config(spec)) for spec in DEFAULT_MODELS]
    paths = [p["trt_engine_cache_path"] for p in parameters]
    assert len(set(paths)) == len(paths)
    assert all(path.startswith(f"{TRT_ENGINE_CACHE}/") for path in paths)
    for p in parameters:
        assert p["trt_engine_cache_enable"] == "1"
        # A prefix would take the graph name's place in the engine's file name, and the graph
        # name is what keeps each version's engine its own (tests/unit/test_tensorrt.py).
        assert "trt_engine_cache_prefix" not in p


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda s: s.name)
def test_cpu_configs_know_nothing_of_tensorrt(spec) -> None:
    config = model_config(spec, "cpu")
    assert not config.HasField("optimization") and not config.model_warmup
    text = render(config)
    assert "trt_" not in text and "tensorrt" not in text


def test_versions_are_pinned_explicitly() -> None:
    config = model_config(DEFAULT_MODELS[2], "gpu", versions=(2, 1))
    assert list(config.version_policy.specific.versions) == [1, 2]


def test_committed_configs_match_the_generator(tmp_path: Path) -> None:
    write_configs(tmp_path)
    for target in TARGETS:
        for spec in DEFAULT_MODELS:
            committed = ROOT / "model_repository" / target / spec.name / "config.pbtxt"
            generated = tmp_path / target / spec.name / "config.pbtxt"
            assert committed.read_text() == generated.read_text(), (
                f"{committed} is stale: run `python -m orchestrator.modelrepo.repository`"
            )
            parse(committed.read_text())
