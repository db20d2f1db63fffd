"""Triton Python-backend model ``face_chain``: an encoded image in, its faces out, one call.

Written as ``model.py`` into ``face_chain/<version>/`` beside a copy of the orchestrator's
image code (``orchestrator/pipeline/vision`` and the errors it raises), which it imports
from there: the stub runs in its own Python environment (numpy<2, OpenCV), never the
orchestrator's. Triton's dynamic batcher hands ``execute`` several images at once; each
model then runs once for all of them (``orchestrator.pipeline.vision.chain``).

The models named in the ``in_process`` parameter run here in ONNX Runtime, at the level
their own config gives (the CPU target's detector and landmark model: a Triton round trip
costs them more than they compute). The others are BLS calls into Triton: the embedder
always, so its versions, rollouts and batching across requests stay Triton's; every model
on the GPU target, where they are TensorRT engines.

An image that cannot be decoded fails its own request with ``[<error class>] <detail>``,
which the orchestrator turns back into that error (a 4xx); a failed model fails the batch.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from orchestrator.core.errors import ImageError
from orchestrator.pipeline.vision.chain import ChainOptions, analyse_batch, to_tensors

cv2.setNumThreads(1)  # parallelism comes from the model's instances


class ModelFailure(RuntimeError):
    pass


def _graph_level(model_dir):
    """The ONNX Runtime level in the model's own config (tuned for this CPU)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    with open(os.path.join(model_dir, "config.pbtxt")) as f:
        config = text_format.Parse(f.read(), model_config_pb2.ModelConfig())
    parameter = config.parameters.get("graph_optimization")
    return parameter.string_value if parameter is not None else "all"


def _in_process(model_dir, version, outputs):
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = levels[_graph_level(model_dir)]
    session = ort.InferenceSession(
        os.path.join(model_dir, str(version), "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name

    def run(batch, version=None):
        return session.run(outputs, {name: batch})

    return run


def _through_triton(model, input_name, outputs, max_batch):
    def run(batch, version="1"):
        parts = []
        for start in range(0, len(batch), max_batch):
            request = pb_utils.InferenceRequest(
                model_name=model,
                model_version=int(version),
                requested_output_names=outputs,
                inputs=[pb_utils.Tensor(input_name, np.ascontiguousarray(batch[start : start + max_batch]))],
            )
            response = request.exec()
            if response.has_error():
                raise ModelFailure(f"{model} version {version}: {response.error().message()}")
            parts.append([pb_utils.get_output_tensor_by_name(response, o).as_numpy() for o in outputs])
        return [np.concatenate([p[k] for p in parts]) for k in range(len(outputs))]

    return run


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        repository = os.path.dirname(os.path.abspath(args["model_repository"]))
        in_process = {n for n in parameters.get("in_process", "").split(",") if n}

        def model(name, outputs):
            if name in in_process:
                return _in_process(os.path.join(repository, name), 1, outputs)
            max_batch = int(parameters[f"{name}.max_batch_size"])
            return _through_triton(name, parameters[f"{name}.input"], outputs, max_batch)

        detector = model(parameters["detector"], ["scores", "boxes"])
        landmarks = model(parameters["landmarks"], ["output"])
        embedder = model(parameters["embedder"], ["output"])
        self.detector = lambda batch: tuple(detector(batch))
        self.landmarks = lambda batch: landmarks(batch)[0]
        self.embedder = lambda batch, version: embedder(batch, version)[0]

    def execute(self, requests):
        responses = [None] * len(requests)
        images, options, owners = [], [], []
        for index, request in enumerate(requests):
            try:
                image = pb_utils.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)[0]
                raw = pb_utils.get_input_tensor_by_name(request, "options").as_numpy().reshape(-1)[0]
                option = ChainOptions.from_json(raw)
            except Exception as error:  # a malformed request fails alone
                responses[index] = _failed(f"malformed face_chain request: {error!r}")
                continue
            images.append(bytes(image))
            options.append(option)
            owners.append(index)
        if not owners:
            return responses
        try:
            results = analyse_batch(images, options, self.detector, self.landmarks, self.embedder)
        except Exception as error:  # answer every request rather than crash the stub
            for index in owners:
                responses[index] = _failed(f"face_chain failed: {error}")
            return responses
        for index, result in zip(owners, results, strict=True):
            if isinstance(result, ImageError):
                responses[index] = _failed(f"[{type(result).__name__}] {result.detail}")
            else:
                tensors = [pb_utils.Tensor(name, value[None]) for name, value in to_tensors(result).items()]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def finalize(self):
        self.detector = self.landmarks = self.embedder = None


def _failed(message):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
