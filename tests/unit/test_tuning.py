"""`facerec models tune`: the choices from measurements, and the configs written from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.modelrepo import tuning
from orchestrator.modelrepo.catalog import ARCFACE, DEFAULT_MODELS, FACE_CHAIN
from orchestrator.modelrepo.repository import chain_config, model_config, parse, render
from orchestrator.modelrepo.tuning import (
    ModelTuning,
    Tuning,
    apply,
    cache_file,
    choose_layout,
    choose_level,
    choose_queue_delay,
    cpu_name,
    wanted_parallelism,
)

pytestmark = pytest.mark.unit


def test_the_fastest_level_wins_unless_the_default_is_within_five_percent() -> None:
    assert choose_level({"basic": 50.0, "extended": 55.0, "all": 18.0}, "all") == "extended"
    assert choose_level({"basic": 56.0, "extended": 55.0, "all": 18.0}, "extended") == "extended"
    assert choose_level({"basic": 60.0, "extended": 55.0, "all": 18.0}, "extended") == "basic"


def test_parallelism_follows_each_models_share_of_the_work() -> None:
    ms = {"face_detector": 1.7, "face_landmarks": 0.2, "arcface": 18.0}
    assert wanted_parallelism(ms, 2) == {"face_detector": 1, "face_landmarks": 1, "arcface": 2}
    assert wanted_parallelism(ms, 16) == {"face_detector": 1, "face_landmarks": 1, "arcface": 14}


def test_instances_win_ties_and_nothing_is_taken_that_does_not_pay() -> None:
    assert choose_layout(50.0, 100.0, 104.0, 2) == (2, 1)  # threads not 10 % better
    assert choose_layout(50.0, 80.0, 100.0, 2) == (1, 2)
    assert choose_layout(50.0, 55.0, 52.0, 2) == (1, 1)  # neither adds 20 %
    assert choose_layout(50.0, 50.0, 50.0, 1) == (1, 1)


def test_requests_are_held_for_a_batch_only_where_batches_run_faster() -> None:
    assert choose_queue_delay(40.0, 41.0, 2000) == 0
    assert choose_queue_delay(300.0, 600.0, 2000) == 2000


def _tuning(instances: int = 2, threads: int = 1, level: str = "all") -> Tuning:
    chosen = ModelTuning(level, threads, instances, 0, 9.0, {"level=all": 111.0})
    return Tuning("Some CPU", 2, "1.0", 1.0, {ARCFACE.name: chosen})


def test_apply_writes_only_the_tuned_fields_and_only_when_they_change(tmp_path: Path) -> None:
    for spec in DEFAULT_MODELS:
        (tmp_path / spec.name).mkdir()
        (tmp_path / spec.name / "config.pbtxt").write_text(render(model_config(spec, "cpu", (1, 3))))
    before = parse((tmp_path / ARCFACE.name / "config.pbtxt").read_text())

    assert apply(tmp_path, _tuning(instances=3, threads=2)) == [ARCFACE.name]
    after = parse((tmp_path / ARCFACE.name / "config.pbtxt").read_text())
    assert [(g.kind, g.count) for g in after.instance_group] == [(before.instance_group[0].kind, 3)]
    assert after.parameters["intra_op_threads"].string_value == "2"
    assert after.parameters["graph_optimization"].string_value == "all"
    assert after.dynamic_batching.max_queue_delay_microseconds == 0
    # Everything else as it was: versions, batch sizes, queue policy.
    assert list(after.version_policy.specific.versions) == [1, 3]
    after.dynamic_batching.max_queue_delay_microseconds = before.dynamic_batching.max_queue_delay_microseconds
    assert after.dynamic_batching == before.dynamic_batching
    assert apply(tmp_path, _tuning(instances=3, threads=2)) == []
    other = (tmp_path / "face_detector" / "config.pbtxt").read_text()
    assert other == render(model_config(DEFAULT_MODELS[0], "cpu", (1, 3)))


def test_the_face_chain_gets_one_instance_a_core(tmp_path: Path) -> None:
    (tmp_path / FACE_CHAIN).mkdir()
    (tmp_path / FACE_CHAIN / "config.pbtxt").write_text(render(chain_config()))
    four_cores = dataclasses.replace(_tuning(), cores=4)
    assert apply(tmp_path, four_cores) == [FACE_CHAIN]
    config = parse((tmp_path / FACE_CHAIN / "config.pbtxt").read_text())
    assert [g.count for g in config.instance_group] == [4]
    assert config.parameters == chain_config().parameters
    assert apply(tmp_path, four_cores) == []
    assert apply(tmp_path, dataclasses.replace(four_cores, cores=2), names=[ARCFACE.name]) == []


def test_the_cache_is_per_cpu_model_and_core_count(tmp_path: Path) -> None:
    a = cache_file(tmp_path, "Intel(R) Xeon(R) Platinum 8480+", 2)
    assert a.parent == tmp_path / "tuning" and a.name == "intel-r-xeon-r-platinum-8480-2c.json"
    assert cache_file(tmp_path, "Intel(R) Xeon(R) Platinum 8480+", 4) != a
    assert cache_file(tmp_path, "AMD EPYC 9654", 2) != a
    assert Tuning.from_json(_tuning().to_json()) == _tuning()


def _cpuinfo(model: int) -> str:
    block = (
        "processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: {model}\n"
        "model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\n"
    )
    return "\n".join(block.format(n=n, model=model) for n in range(2))


def test_two_vms_whose_cpus_share_a_name_get_a_tuning_each() -> None:
    """A VM's CPU is often just "Intel(R) Xeon(R) Processor": the numbers tell hosts apart."""
    newer, older = cpu_name(_cpuinfo(207)), cpu_name(_cpuinfo(106))
    assert newer == "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2)"
    assert cache_file(Path("store"), newer, 2) != cache_file(Path("store"), older, 2)


def test_a_tuning_measured_on_a_busy_machine_is_used_then_measured_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = tmp_path / "repository" / "cpu"
    (repository / ARCFACE.name).mkdir(parents=True)
    (repository / ARCFACE.name / "config.pbtxt").write_text(render(model_config(ARCFACE, "cpu")))
    busy = dataclasses.replace(_tuning(instances=1), other_cores=1.2)
    quiet = _tuning(instances=2)
    measured: list[Tuning] = [quiet, busy]
    monkeypatch.setattr(tuning, "tune", lambda *args, **kwargs: measured.pop())

    assert tuning.ensure_tuned(tmp_path)[0] == busy and busy.noisy
    assert tuning.ensure_tuned(tmp_path) == (quiet, [ARCFACE.name])  # measured again
    assert tuning.ensure_tuned(tmp_path) == (quiet, [])  # kept: nothing left to measure
    config = parse((repository / ARCFACE.name / "config.pbtxt").read_text())
    assert config.instance_group[0].count == 2
