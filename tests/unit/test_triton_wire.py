"""Inference requests built off the event loop, as bytes, and their answers read back."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from orchestrator.clients.triton import ModelInfo, infer_outputs, infer_request

pytestmark = pytest.mark.unit

INFO = ModelInfo("arcface", "2", ("input",), ("output", "norms"), 64)


def test_a_request_carries_the_batch_and_asks_for_every_output() -> None:
    batch = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    request = service_pb2.ModelInferRequest.FromString(infer_request(INFO, batch))
    assert (request.model_name, request.model_version) == ("arcface", "2")
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("input", "FP32", [2, 3, 4])
    sent = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(sent, batch.astype(np.float32))
    assert [output.name for output in request.outputs] == ["output", "norms"]


def test_an_answer_gives_each_output_with_its_type_and_shape() -> None:
    vectors = np.random.default_rng(1).standard_normal((3, 512)).astype(np.float32)
    ids = np.array([[7], [8], [9]], dtype=np.int64)
    reply = service_pb2.ModelInferResponse(model_name="arcface", model_version="2")
    for name, array, datatype in (("output", vectors, "FP32"), ("ids", ids, "INT64")):
        reply.outputs.add(name=name, datatype=datatype, shape=array.shape)
        reply.raw_output_contents.append(array.tobytes())
    outputs = infer_outputs(reply.SerializeToString())
    assert np.array_equal(outputs["output"], vectors) and outputs["output"].dtype == np.float32
    assert np.array_equal(outputs["ids"], ids) and outputs["ids"].shape == (3, 1)
