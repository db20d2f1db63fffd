"""``facerec models tune``: each CPU model's ONNX Runtime settings, measured on this CPU.

What runs fastest differs from one CPU to the next: the embedder at graph optimisation
level "all" was 2.7× and 3× slower than at "extended" on two of our machines and 1.7×
faster on another, with the same ONNX Runtime. So the CPU repository is not shipped tuned;
it is measured where it runs, once per CPU model (:func:`cpu_name`: name and numbers), and
the result is cached and written into each model's ``config.pbtxt``. The GPU target keeps its
TensorRT settings.

Per model, with random inputs at a batch the dynamic batcher forms under load:

- the level: single-threaded items/s at each of basic, extended, all; the fastest wins
  unless the catalog's default is within 5 % of it;
- the parallelism: the model's share of the chain's work per image (one face an image)
  times the cores, at least 1;
- the layout of that parallelism: as many single-threaded instances (stub processes) or
  one instance with as many intra-op threads, measured both ways; instances unless the
  threads are clearly faster, and neither unless it adds ≥ 20 % over one thread;
- the dynamic batcher's queue delay: none unless a batch runs ≥ 10 % faster per item than
  single requests.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import platform
import re
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from tritonclient.grpc import model_config_pb2 as mc

from orchestrator.modelrepo.catalog import DEFAULT_MODELS, FACE_CHAIN, FACE_DETECTOR, ModelSpec
from orchestrator.modelrepo.repository import CONFIG_FILE, MODEL_FILE, parse, render, replace_file

log = logging.getLogger(__name__)

LEVELS = ("basic", "extended", "all")
TUNING_DIR = "tuning"
"""Beside the repositories in the model store: ``<store>/tuning/<cpu>.json``."""
LEVEL_MARGIN = 1.05
INSTANCE_GAIN = 1.2
THREAD_ADVANTAGE = 1.1
BATCH_GAIN = 1.1
NOISY_CORES = 0.3


@dataclass(frozen=True)
class ModelTuning:
    graph_optimization: str
    intra_op_threads: int
    instances: int
    max_queue_delay_us: int
    """How long the dynamic batcher may hold a request for a fuller batch: 0 when batches
    run no faster per item than single requests (a held request only idles an instance)."""
    ms_per_item: float
    """Single-threaded, at the chosen level: the model's cost per image (detector) or face."""
    measured: dict[str, float]
    """Items/s of every setting tried: ``level=all``, ``threads=2``, ``instances=2``."""


@dataclass(frozen=True)
class Tuning:
    cpu: str
    cores: int
    onnxruntime: str
    seconds: float
    """Measuring time per setting."""
    models: dict[str, ModelTuning]
    other_cores: float = 0.0
    """Cores other processes kept busy while it was measured: above ``NOISY_CORES`` the
    tuning is used but measured again at the next start."""

    @property
    def noisy(self) -> bool:
        return self.other_cores > NOISY_CORES

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Tuning:
        raw = json.loads(text)
        models = {name: ModelTuning(**fields) for name, fields in raw.pop("models").items()}
        return cls(**raw, models=models)


def configured_level(repository: Path, spec: ModelSpec) -> str:
    """The graph optimisation level the repository's config gives the model's stub."""
    config = parse((repository / spec.name / CONFIG_FILE).read_text())
    parameter = config.parameters.get("graph_optimization")
    return parameter.string_value if parameter is not None else spec.cpu_graph_optimization


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU model as the kernel names it, with its family, model and stepping numbers.

    A virtual machine's CPU is often named only "Intel(R) Xeon(R) Processor", whatever the
    host's generation; the numbers tell the generations apart, and the tuning differs between
    them (the embedder at level "all": 1.7× faster than "extended" on one such VM, 2.8×
    slower on another, model 207). ``platform`` where /proc has no model name.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            if fields:  # the first processor's block is enough
                break
            continue
        fields.setdefault(key.strip(), " ".join(value.split()))
    name = fields.get("model name")
    if not name:
        return platform.processor() or platform.machine()
    numbers = [f"{k.split()[-1]} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields]
    return f"{name} ({', '.join(numbers)})" if numbers else name


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cache_file(store_root: Path, cpu: str, core_count: int) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-") or "cpu"
    return store_root / TUNING_DIR / f"{slug}-{core_count}c.json"


def probe_batch(spec: ModelSpec) -> int:
    """Images (detector) or faces per batch as Triton forms them at 16-32 clients on 2 cores."""
    return min(4 if spec is FACE_DETECTOR else 8, spec.max_batch_size)


def probe_inputs(spec: ModelSpec, batch: int) -> dict[str, np.ndarray]:
    """Random inputs, uniform in [-1, 1] and seeded: the same numbers every time."""
    return {
        t.name: np.random.default_rng(0).uniform(-1, 1, (batch, *t.dims)).astype(np.float32)
        for t in spec.inputs
    }


def session(model: Path, level: str, threads: int) -> Any:
    """An ONNX Runtime CPU session at graph optimisation ``level``, as Triton's stub opens it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def items_per_s(
    model: Path, spec: ModelSpec, level: str, threads: int, seconds: float, batch: int | None = None
) -> float:
    """Items/s of one session on random inputs of ``batch`` (the probe batch), after a warm-up run."""
    opened = session(model, level, threads)
    batch = batch or probe_batch(spec)
    feed = probe_inputs(spec, batch)
    opened.run(None, feed)
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or runs < 3:
        opened.run(None, feed)
        runs += 1
    return batch * runs / elapsed


def _instance(
    model: str, name: str, level: str, seconds: float, batch: int | None, start: Any, results: Any
) -> None:
    from orchestrator.runtime.allocator import keep_freed_memory

    spec = next(s for s in DEFAULT_MODELS if s.name == name)
    os.environ["OMP_NUM_THREADS"] = "1"
    keep_freed_memory()  # as Triton's model processes run
    session(Path(model), level, 1)  # loaded before the start, so the instances overlap
    start.wait()
    results.put(items_per_s(Path(model), spec, level, 1, seconds, batch))


def instances_per_s(
    model: Path, spec: ModelSpec, level: str, count: int, seconds: float, batch: int | None = None
) -> float:
    """Items/s of ``count`` single-threaded processes on the model at once, summed (``batch``
    as in ``items_per_s``)."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(count), context.Queue()
    workers = [
        context.Process(target=_instance, args=(str(model), spec.name, level, seconds, batch, start, results))
        for _ in range(count)
    ]
    for worker in workers:
        worker.start()
    try:
        return float(sum(results.get(timeout=120 + 10 * seconds) for _ in workers))
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()


class _OtherWork:
    """Cores kept busy by other processes since it was made (steal too: another VM on ours)."""

    def __init__(self) -> None:
        self.started, self.busy, self.own = time.monotonic(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))

    @staticmethod
    def _own() -> float:
        # Joined children (the instances measured) count in RUSAGE_CHILDREN.
        return sum(
            r.ru_utime + r.ru_stime
            for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        )

    def cores(self) -> float:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return max(0.0, (self._busy() - self.busy - (self._own() - self.own)) / elapsed)


def choose_level(rates: dict[str, float], default: str) -> str:
    """The fastest level, unless the catalog's default is within 5 % (a re-run must not flap)."""
    fastest = max(rates, key=lambda level: rates[level])
    return default if rates[default] * LEVEL_MARGIN >= rates[fastest] else fastest


def wanted_parallelism(ms_per_item: dict[str, float], core_count: int) -> dict[str, int]:
    """Cores each model needs for its share of the chain's work per image (one face an image)."""
    total = sum(ms_per_item.values())
    return {name: max(1, round(core_count * ms / total)) for name, ms in ms_per_item.items()}


def choose_layout(single: float, instances: float, threads: float, parallelism: int) -> tuple[int, int]:
    """(instances, intra-op threads) for ``parallelism`` cores, from items/s measured three ways.

    ``single``: one single-threaded session; ``instances``: ``parallelism`` of them in as many
    processes at once; ``threads``: one session with ``parallelism`` threads. Instances win
    ties: on cores shared with other work a thread that waits holds every operator's barrier,
    a stalled instance only its own batch. Neither is taken unless it adds ≥ 20 %.
    """
    if parallelism == 1 or max(instances, threads) < INSTANCE_GAIN * single:
        return 1, 1
    if threads >= THREAD_ADVANTAGE * instances:
        return 1, parallelism
    return parallelism, 1


def choose_queue_delay(one_by_one: float, batched: float, default_us: int) -> int:
    """The catalog's queue delay if a batch runs ≥ 10 % faster per item than one at a time
    (items/s at batch 1 and at the probe batch), else none.

    Without a gain, holding requests for a batch only makes them wait, and hands all of them
    to one instance while another is idle (perf_analyzer showed the embedder's two instances
    at 2-4 requests in flight running as one)."""
    return default_us if batched >= BATCH_GAIN * one_by_one else 0


def tune(
    repository: Path,
    seconds: float = 1.0,
    core_count: int | None = None,
    progress: Callable[[str], None] = log.info,
) -> Tuning:
    """Measure every model of the CPU ``repository`` (its version 1) on this CPU."""
    import onnxruntime as ort

    core_count = core_count or cores()
    others = _OtherWork()
    measured: dict[str, dict[str, float]] = {}
    levels: dict[str, str] = {}
    for spec in DEFAULT_MODELS:
        model = repository / spec.name / "1" / MODEL_FILE
        rates = {level: items_per_s(model, spec, level, 1, seconds) for level in LEVELS}
        levels[spec.name] = choose_level(rates, spec.cpu_graph_optimization)
        measured[spec.name] = {f"level={k}": round(v, 1) for k, v in rates.items()}
        progress(f"{spec.name}: level {levels[spec.name]} ({1000 / rates[levels[spec.name]]:.2f} ms an item)")
    ms = {name: 1000.0 / measured[name][f"level={level}"] for name, level in levels.items()}
    wanted = wanted_parallelism(ms, core_count)
    models = {}
    for spec in DEFAULT_MODELS:
        model, level = repository / spec.name / "1" / MODEL_FILE, levels[spec.name]
        parallelism = wanted[spec.name]
        single = measured[spec.name][f"level={level}"]
        instances = threads = single
        if parallelism > 1:
            instances = instances_per_s(model, spec, level, parallelism, seconds)
            threads = items_per_s(model, spec, level, parallelism, seconds)
            measured[spec.name][f"instances={parallelism}"] = round(instances, 1)
            measured[spec.name][f"threads={parallelism}"] = round(threads, 1)
        count, intra = choose_layout(single, instances, threads, parallelism)
        one_by_one = items_per_s(model, spec, level, 1, seconds, batch=1)
        measured[spec.name]["batch=1"] = round(one_by_one, 1)
        delay = choose_queue_delay(one_by_one, single, spec.max_queue_delay_us)
        models[spec.name] = ModelTuning(
            level, intra, count, delay, round(ms[spec.name], 3), measured[spec.name]
        )
        progress(f"{spec.name}: {count} instance(s) of {intra} thread(s), queue delay {delay} µs")
    return Tuning(cpu_name(), core_count, ort.__version__, seconds, models, round(others.cores(), 2))


def apply(repository: Path, tuning: Tuning, names: Iterable[str] | None = None) -> list[str]:
    """Write the tuned settings into each model's config (atomically); the models changed."""
    changed = []
    for name in names or tuning.models:
        path = repository / name / CONFIG_FILE
        if name not in tuning.models or not path.is_file():
            continue
        chosen = tuning.models[name]
        config = parse(path.read_text())
        before = render(config)
        del config.instance_group[:]
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=chosen.instances)
        config.parameters["graph_optimization"].string_value = chosen.graph_optimization
        config.parameters["intra_op_threads"].string_value = str(chosen.intra_op_threads)
        if config.HasField("dynamic_batching"):  # not in a repository written without batching
            config.dynamic_batching.max_queue_delay_microseconds = chosen.max_queue_delay_us
        if render(config) != before:
            replace_file(path, render(config))
            changed.append(name)
    if names is None and _one_chain_per_core(repository / FACE_CHAIN / CONFIG_FILE, tuning.cores):
        changed.append(FACE_CHAIN)
    return changed


def _one_chain_per_core(path: Path, cores: int) -> bool:
    """The face_chain's stubs: one a core, as the physical limit's workers (each holds its
    process's GIL for the decode and the warps). Whether the config changed."""
    if not path.is_file():
        return False
    config = parse(path.read_text())
    if [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, cores)]:
        return False
    del config.instance_group[:]
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=cores)
    replace_file(path, render(config))
    return True


def quiet_cached(store_root: Path) -> Tuning | None:
    """This CPU's cached tuning if it was measured on a quiet machine; None if there is none,
    it is unreadable, or other processes were busy while it was measured."""
    path = cache_file(store_root, cpu_name(), cores())
    if not path.is_file():
        return None
    try:
        tuning = Tuning.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as error:
        log.warning("%s is unreadable (%s): measuring again", path, error)
        return None
    return None if tuning.noisy else tuning


def ensure_tuned(
    store_root: Path, seconds: float = 1.0, force: bool = False, progress: Callable[[str], None] = log.info
) -> tuple[Tuning, list[str]]:
    """The cached tuning of this CPU (measured now if there is none, or ``force``), applied."""
    repository = store_root / "repository" / "cpu"
    path = cache_file(store_root, cpu_name(), cores())
    tuning = None if force else quiet_cached(store_root)
    if tuning is None:
        progress(f"tuning the CPU models for {cpu_name()} ({cores()} cores), once per CPU model")
        tuning = tune(repository, seconds, progress=progress)
        if tuning.noisy:
            progress(
                f"other processes took {tuning.other_cores:.2f} cores meanwhile: measuring again next start"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, tuning.to_json())
    return tuning, apply(repository, tuning)
