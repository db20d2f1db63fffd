"""What the GPU target tells TensorRT: one optimisation profile per model, one engine per version.

**Profiles.** Without ``trt_profile_{min,opt,max}_shapes``, ONNX Runtime's TensorRT provider
builds an engine for the shapes it has seen and builds it again whenever a larger batch
arrives, inside the request that brought it. With all three set for every dynamic input it
builds one engine for the whole range [1, max_batch_size] when the session is created, i.e.
while Triton loads the model, and the engine cache keeps it (a cached ``.profile`` differing
from the configured one makes it rebuild). The string format is the provider's:
``input:1x3x112x112``, inputs separated by commas.

**Engine identity.** The provider names a cached engine
``TensorrtExecutionProvider_TRTKernel_graph_<graph name>_<hash>_…_sm<cc>.engine``, where the
hash covers the file's name, tensor names and library versions but not the weights. Every
version here is ``model.onnx`` with the same tensor names, so a retrained embedder would be
served with its predecessor's engine. Triton's config belongs to the model, shared by all its
versions, so no config value can tell versions apart: the graph name does. Each version's
file carries ``<model>_v<version>_<digest>`` as its graph name, the digest taken over the
model without that name. ``trt_engine_cache_prefix`` stays unset: a prefix takes the graph
name's place in the file name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import onnx

from orchestrator.modelrepo.catalog import ModelSpec

TRT_ENGINE_CACHE = "/engine_cache"
"""Where the GPU Triton keeps built engines (a volume in compose and Kubernetes)."""
DIGEST_CHARS = 12


@dataclass(frozen=True)
class BatchProfile:
    """The batch sizes one TensorRT engine serves: every size in [min, max], fastest at opt."""

    min: int
    opt: int
    max: int


def batch_profile(spec: ModelSpec) -> BatchProfile:
    """From batch 1 to the model's ``max_batch_size``, tuned for its middle preferred batch.

    Under load the dynamic batcher forms the preferred sizes; the middle one stands between a
    lightly loaded GPU and a saturated one. Kernels chosen for opt stay valid over the range.
    """
    preferred = sorted(spec.preferred_batch_sizes) or [spec.max_batch_size]
    return BatchProfile(min=1, opt=preferred[len(preferred) // 2], max=spec.max_batch_size)


def profile_shapes(spec: ModelSpec, batch: int) -> str:
    """Every input of ``spec`` at ``batch``, as ``name:NxDxD,name:NxD``."""
    return ",".join(f"{t.name}:{'x'.join(str(d) for d in (batch, *t.dims))}" for t in spec.inputs)


def engine_cache_path(spec: ModelSpec) -> str:
    """A directory per model (ONNX Runtime creates it): a model's engines can be dropped alone."""
    return f"{TRT_ENGINE_CACHE}/{spec.name}"


def accelerator_parameters(spec: ModelSpec) -> dict[str, str]:
    """The onnxruntime backend's ``tensorrt`` accelerator parameters for ``spec``."""
    profile = batch_profile(spec)
    return {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(1 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": engine_cache_path(spec),
        "trt_profile_min_shapes": profile_shapes(spec, profile.min),
        "trt_profile_opt_shapes": profile_shapes(spec, profile.opt),
        "trt_profile_max_shapes": profile_shapes(spec, profile.max),
    }


def engine_identity(model: onnx.ModelProto, name: str, version: int) -> str:
    """``<name>_v<version>_<digest>``: the graph name that keeps this version's engine its own.

    The digest ignores the graph name itself, so an identified model keeps its identity.
    """
    return with_engine_identity(model, name, version).graph.name


def with_engine_identity(model: onnx.ModelProto, name: str, version: int) -> onnx.ModelProto:
    """A copy of ``model`` named for version ``version`` of the Triton model ``name``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.name = ""
    digest = hashlib.sha256(out.SerializeToString(deterministic=True)).hexdigest()
    out.graph.name = f"{name}_v{version}_{digest[:DIGEST_CHARS]}"
    return out
