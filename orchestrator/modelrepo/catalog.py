"""The default model set and the tensor contract of every Triton model.

One source for both repository targets (CPU Python backend, GPU onnxruntime backend), so
tensor names, dtypes and dims cannot drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass

NPM_PACKAGE = "faceplugin-face-recognition-js@0.0.1"
NPM_TARBALL_SHA256 = "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba"


@dataclass(frozen=True)
class Tensor:
    """A tensor as Triton sees it: dims exclude the batch dimension."""

    name: str
    dims: tuple[int, ...]
    dtype: str = "TYPE_FP32"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    """Triton model name."""
    source: str
    """Member of the npm tarball that holds the original ONNX file."""
    sha256: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 2000
    max_queue_size: int = 256
    queue_timeout_us: int = 10_000_000
    cpu_graph_optimization: str = "all"
    """ONNX Runtime graph optimisation level on the CPU target: "extended" or "all"."""
    cpu_instances: int = 1
    """Model instances (stub processes) on the CPU target, each running one ONNX Runtime thread."""

    @property
    def input(self) -> Tensor:
        return self.inputs[0]


FACE_DETECTOR = ModelSpec(
    name="face_detector",
    source="package/model/fr_detect.onnx",
    sha256="6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
    inputs=(Tensor("input", (3, 240, 320)),),
    outputs=(Tensor("scores", (4420, 2)), Tensor("boxes", (4420, 4))),
    max_batch_size=16,
    preferred_batch_sizes=(4, 8, 16),
)

FACE_LANDMARKS = ModelSpec(
    name="face_landmarks",
    source="package/model/fr_landmark.onnx",
    sha256="f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
    inputs=(Tensor("input", (1, 64, 64)),),
    outputs=(Tensor("output", (136,)),),
    max_batch_size=64,
    preferred_batch_sizes=(16, 32, 64),
)

ARCFACE = ModelSpec(
    name="arcface",
    source="package/model/fr_feature.onnx",
    sha256="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
    inputs=(Tensor("input", (3, 112, 112)),),
    outputs=(Tensor("output", (512,)),),
    max_batch_size=64,
    preferred_batch_sizes=(16, 32, 64),
    # The default until `facerec models tune` measures the CPU: on most of ours the NCHWc
    # layout transforms of level "all" made this depthwise-heavy network 2.7-3x slower.
    cpu_graph_optimization="extended",
    # Two single-threaded instances beat one two-threaded one when other processes share the
    # cores: 56 vs 23 faces/s at 8 callers, p99 50 vs 537 ms (a stalled thread holds every
    # operator's barrier in the multi-threaded one).
    cpu_instances=2,
)

DEFAULT_MODELS: tuple[ModelSpec, ...] = (FACE_DETECTOR, FACE_LANDMARKS, ARCFACE)

FACE_CHAIN = "face_chain"
"""The Python-backend model that analyses a whole encoded image in one call, running the
three models above (``triton_backend/face_chain.py``); the orchestrator's recognition path."""
CHAIN_MAX_BATCH_SIZE = 8
CHAIN_CPU_INSTANCES = 2
"""One stub process a core of the machines we measure on: the chain's own work (decode,
crops, warps) holds the GIL of its process."""

SERVED_MODELS: tuple[str, ...] = (*(spec.name for spec in DEFAULT_MODELS), FACE_CHAIN)
"""What Triton loads."""
