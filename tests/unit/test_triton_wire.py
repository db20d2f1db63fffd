"""Inference requests built off the event loop, as bytes, their answers read back, and a
restarted Triton reached again."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from orchestrator.clients.triton import RECONNECT_S, ModelInfo, TritonModels, infer_outputs, infer_request
from orchestrator.core.errors import UpstreamUnavailable

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


class _EchoTriton:
    """A gRPC server answering ModelInfer with its input as "output", or refusing as a full
    queue does; started and stopped on one port, as a restarted Triton is."""

    def __init__(self, port: int, refuse: bool = False) -> None:
        self.port, self.refuse, self.calls = port, refuse, 0
        self._server: grpc.aio.Server | None = None

    async def _infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        if self.refuse:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "Exceeds maximum queue size")
        asked = service_pb2.ModelInferRequest.FromString(request)
        reply = service_pb2.ModelInferResponse(model_name=asked.model_name)
        reply.outputs.add(name="output", datatype="FP32", shape=asked.inputs[0].shape)
        reply.raw_output_contents.append(asked.raw_input_contents[0])
        return reply.SerializeToString()

    async def start(self) -> int:
        self._server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(self._infer)  # bytes in, bytes out
        service = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService", {"ModelInfer": handler}
        )
        self._server.add_generic_rpc_handlers((service,))
        self.port = self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()
        return self.port

    async def stop(self) -> None:
        assert self._server is not None
        await self._server.stop(grace=None)


ECHO = ModelInfo("echo", "1", ("input",), ("output",), 8)


async def test_a_restarted_triton_serves_the_next_request_of_every_channel() -> None:
    triton = _EchoTriton(0)
    port = await triton.start()
    batch = np.ones((2, 4), dtype=np.float32)
    async with TritonModels(f"127.0.0.1:{port}", timeout_s=5.0) as models:
        assert np.array_equal((await models._infer_one(ECHO, batch))["output"], batch)
        await triton.stop()
        began = time.monotonic()
        with pytest.raises(UpstreamUnavailable):  # down: a 503, and soon
            await models._infer_one(ECHO, batch)
        assert time.monotonic() - began < RECONNECT_S + 1.0
        # Up again: the channel is in its reconnect backoff, and fails fast while in it.
        await triton.start()
        try:
            assert np.array_equal((await models._infer_one(ECHO, batch))["output"], batch)
        finally:
            await triton.stop()


async def test_a_full_queue_is_answered_once_not_retried() -> None:
    triton = _EchoTriton(0, refuse=True)
    port = await triton.start()
    try:
        async with TritonModels(f"127.0.0.1:{port}", timeout_s=5.0) as models:
            with pytest.raises(UpstreamUnavailable, match="maximum queue size"):
                await models._infer_one(ECHO, np.ones((1, 4), dtype=np.float32))
        assert triton.calls == 1
    finally:
        await triton.stop()
