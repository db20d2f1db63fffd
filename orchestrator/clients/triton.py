"""Async gRPC client for the face models in Triton.

Tensor names and ``max_batch_size`` are read from Triton when a model is first used, not
hard-coded; every call carries a timeout and an explicit model version. Triton's
UNAVAILABLE (queue full, model not ready) becomes ``UpstreamUnavailable`` → 503 with
Retry-After; a deadline that passes becomes the same, never a hang.

Inference requests are built and serialised in a worker thread and go out as bytes:
copying a batch into protobuf and serialising it took the event loop ~3 ms an image under
overload (py-spy), time in which the process answered nothing, not even the door's
refusals.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions, service_pb2
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from orchestrator.core.errors import ImageError, ImageTooLarge, UnsupportedImage, UpstreamUnavailable


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_batch_size: int


def _unavailable(model: str, error: InferenceServerException) -> UpstreamUnavailable:
    return _refused(model, "DEADLINE_EXCEEDED" in str(error.status() or ""), str(error.message()))


def _refused(model: str, timed_out: bool, message: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(f"{model}: {'Triton did not answer in time' if timed_out else message}")


MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"

RECONNECT_S = 2.0
"""How long a call that failed waits for a channel that lost Triton to connect again: past
the reconnect backoff's ceiling below, so a restarted Triton serves it; short, so a Triton
that stays down is a 503 soon."""

CHANNEL_ARGS = [
    # tritonclient's defaults (the channel_args parameter replaces them all) ...
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.keepalive_time_ms", KeepAliveOptions().keepalive_time_ms),
    ("grpc.keepalive_timeout_ms", KeepAliveOptions().keepalive_timeout_ms),
    ("grpc.keepalive_permit_without_calls", KeepAliveOptions().keepalive_permit_without_calls),
    ("grpc.http2.max_pings_without_data", KeepAliveOptions().http2_max_pings_without_data),
    # ... and a reconnect backoff of at most 1 s, not gRPC's 120 s: each worker has its own
    # channel, so one worker's readiness says nothing of another's backoff after a restart.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def infer_request(info: ModelInfo, batch: np.ndarray) -> bytes:
    """The serialised ModelInfer request of ``batch`` for ``info``'s single input."""
    request = service_pb2.ModelInferRequest(model_name=info.name, model_version=info.version)
    request.inputs.add(name=info.inputs[0], datatype="FP32", shape=batch.shape)
    request.raw_input_contents.append(np.ascontiguousarray(batch, dtype=np.float32).tobytes())
    for name in info.outputs:
        request.outputs.add(name=name)
    return request.SerializeToString()


def bytes_request(info: ModelInfo, values: Mapping[str, bytes]) -> bytes:
    """The serialised ModelInfer request of one BYTES element per input (a batch of one)."""
    request = service_pb2.ModelInferRequest(model_name=info.name, model_version=info.version)
    for name in info.inputs:
        request.inputs.add(name=name, datatype="BYTES", shape=(1, 1))
        # Triton's raw BYTES layout: each element is its 4-byte little-endian length, then it.
        request.raw_input_contents.append(struct.pack("<I", len(values[name])) + values[name])
    for name in info.outputs:
        request.outputs.add(name=name)
    return request.SerializeToString()


_IMAGE_ERRORS: dict[str, type[ImageError]] = {
    cls.__name__: cls for cls in (ImageError, UnsupportedImage, ImageTooLarge)
}
_IMAGE_ERROR = re.compile(r"\[(\w+)\] (.*)", re.DOTALL)


def image_error(details: str) -> ImageError | None:
    """The image error a model answered with (``[<class>] <detail>``), if it is one."""
    found = _IMAGE_ERROR.search(details)
    if found and found.group(1) in _IMAGE_ERRORS:
        return _IMAGE_ERRORS[found.group(1)](found.group(2))
    return None


def infer_outputs(response: bytes) -> dict[str, np.ndarray]:
    """The output tensors of a serialised ModelInfer response, by name."""
    reply = service_pb2.ModelInferResponse.FromString(response)
    return {
        output.name: np.frombuffer(raw, dtype=triton_to_np_dtype(output.datatype)).reshape(output.shape)
        for output, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)
    }


class TritonModels:
    """One gRPC channel to Triton (tritonclient's, with inference sent on it as bytes), and
    what it knows about each model version."""

    def __init__(self, url: str, timeout_s: float = 10.0, executor: Executor | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.executor = executor
        """Where requests are serialised (None: the loop's default executor)."""
        self._client = InferenceServerClient(url, channel_args=CHANNEL_ARGS)
        # Inference as bytes on tritonclient's own channel: a second channel reconnected on
        # its own backoff after a Triton restart, failing requests (503) that this one, ready
        # again, would have carried (tests/e2e/test_faults.py).
        self._model_infer = self._client._channel.unary_unary(MODEL_INFER)  # no (de)serialiser
        self._info: dict[tuple[str, str], ModelInfo] = {}
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> TritonModels:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def info(self, model: str, version: str = "1") -> ModelInfo:
        key = (model, version)
        if key in self._info:
            return self._info[key]
        async with self._lock:
            if key not in self._info:
                try:
                    meta, config = await self._metadata(model, version)
                except InferenceServerException as error:
                    if not await self._reconnected():
                        raise _unavailable(model, error) from error
                    try:
                        meta, config = await self._metadata(model, version)
                    except InferenceServerException as again:
                        raise _unavailable(model, again) from again
                self._info[key] = ModelInfo(
                    name=model,
                    version=version,
                    inputs=tuple(t["name"] for t in meta["inputs"]),
                    outputs=tuple(t["name"] for t in meta["outputs"]),
                    max_batch_size=int(config["config"].get("max_batch_size", 0)),
                )
        return self._info[key]

    async def _metadata(self, model: str, version: str) -> tuple[Any, Any]:
        meta = await self._client.get_model_metadata(
            model, version, as_json=True, client_timeout=self.timeout_s
        )
        config = await self._client.get_model_config(
            model, version, as_json=True, client_timeout=self.timeout_s
        )
        return meta, config

    async def _reconnected(self) -> bool:
        """After a failed call: whether the channel had lost Triton and has it again within
        ``RECONNECT_S`` (a restart), so that the call is worth one more try. A channel that
        lost its server fails every call at once while it backs off, before any is sent."""
        channel = self._client._channel
        if channel.get_state() is grpc.ChannelConnectivity.READY:
            return False  # connected: the failure was Triton's own answer
        try:
            await asyncio.wait_for(channel.channel_ready(), min(self.timeout_s, RECONNECT_S))
        except TimeoutError:
            return False
        return True

    async def infer(self, model: str, batch: np.ndarray, version: str = "1") -> dict[str, np.ndarray]:
        """Run a batch [N, ...] of the model's single input; outputs are [N, ...] each.

        A batch larger than the model's max_batch_size is split into several requests that
        Triton may schedule together.
        """
        info = await self.info(model, version)
        limit = info.max_batch_size or len(batch)
        chunks = [batch[i : i + limit] for i in range(0, len(batch), limit)]
        parts = await asyncio.gather(*(self._infer_one(info, chunk) for chunk in chunks))
        return {name: np.concatenate([p[name] for p in parts]) for name in info.outputs}

    async def _infer_one(self, info: ModelInfo, batch: np.ndarray) -> dict[str, np.ndarray]:
        request = await asyncio.get_running_loop().run_in_executor(self.executor, infer_request, info, batch)
        return await self._answer(info, request)

    async def infer_bytes(
        self, model: str, values: Mapping[str, bytes], version: str = "1"
    ) -> dict[str, np.ndarray]:
        """Run one request of a model whose inputs are each one BYTES element (``face_chain``).

        Serialised here, on the loop: it is one copy of the bytes. An ``[ImageError] …``
        answer is raised as that error (the image, not the service, is at fault).
        """
        info = await self.info(model, version)
        return await self._answer(info, bytes_request(info, values))

    async def _answer(self, info: ModelInfo, request: bytes) -> dict[str, np.ndarray]:
        try:
            response = await self._send(request)
        except grpc.aio.AioRpcError as error:
            details = str(error.details())
            if (bad_image := image_error(details)) is not None:
                raise bad_image from None
            timed_out = error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            raise _refused(info.name, timed_out, details) from error
        return infer_outputs(response)

    async def _send(self, request: bytes) -> bytes:
        try:
            return await self._model_infer(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or not await self._reconnected():
                raise
        # Never sent (the channel had no Triton): sent once more, now that it has.
        return await self._model_infer(request, timeout=self.timeout_s)

    async def statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        stats: Any = await self._client.get_inference_statistics(
            model, version, as_json=True, client_timeout=self.timeout_s
        )
        return dict(stats)

    async def repository_index(self) -> list[dict[str, Any]]:
        try:
            index: Any = await self._client.get_model_repository_index(
                as_json=True, client_timeout=self.timeout_s
            )
        except InferenceServerException as error:
            raise _unavailable("repository", error) from error
        return list(index.get("models", []))

    async def is_ready(self, model: str, version: str = "1") -> bool:
        try:
            return bool(await self._client.is_model_ready(model, version, client_timeout=self.timeout_s))
        except InferenceServerException:
            return False
