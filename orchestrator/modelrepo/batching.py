"""Rewrite an ONNX model exported with batch 1 so that it accepts any batch size.

Dim 0 of every graph input and output becomes the symbolic ``batch``; Reshape targets that
were baked for batch 1 (e.g. ``[1, -1]``) become ``[-1, *static_rest]`` with the rest taken
from shape inference on the original graph, so the output keeps its static feature size.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

BATCH_DIM = "batch"


class BatchRewriteError(ValueError):
    pass


def _static_shape(value_info: onnx.ValueInfoProto) -> list[int] | None:
    dims = value_info.type.tensor_type.shape.dim
    if not dims or any(not d.HasField("dim_value") for d in dims):
        return None
    return [d.dim_value for d in dims]


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` whose inputs and outputs have a symbolic batch dimension."""
    inferred = shape_inference.infer_shapes(model)
    shapes = {
        vi.name: _static_shape(vi)
        for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    }
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {init.name: init for init in graph.initializer}

    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in initializers:
            continue
        init = initializers[node.input[1]]
        target = numpy_helper.to_array(init)
        if target.ndim != 1 or target.size == 0 or target[0] != 1:
            continue
        static_out = shapes.get(node.output[0])
        if static_out is None:
            raise BatchRewriteError(f"cannot infer the output shape of Reshape {node.name!r}")
        new_target = np.array([-1, *static_out[1:]], dtype=target.dtype)
        init.CopyFrom(numpy_helper.from_array(new_target, init.name))

    for value in [*graph.input, *graph.output]:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise BatchRewriteError(f"tensor {value.name!r} has no shape")
        dims[0].Clear()
        dims[0].dim_param = BATCH_DIM
    # Intermediate shapes were inferred for batch 1; stale ones would mislead runtimes.
    del graph.value_info[:]
    onnx.checker.check_model(out)
    return out
