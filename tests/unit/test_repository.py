"""Both repository targets come from one catalog and parse as Triton's ModelConfig."""

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.repository import TARGETS, model_config, parse, render, write_configs

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
