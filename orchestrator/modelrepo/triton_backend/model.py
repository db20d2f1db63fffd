"""Triton Python-backend model that runs an ONNX file with ONNX Runtime on the CPU.

Copied next to ``model.onnx`` in every version directory of the CPU repository. It runs
inside Triton's stub process (its own Python environment with numpy<2), never in the
orchestrator. Triton's dynamic batcher hands ``execute`` several requests at once: they are
concatenated, run in one ONNX Runtime call, split again, and each request is answered on
its own (a malformed request fails alone).
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

OPTIMIZATION_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))
        options.graph_optimization_level = OPTIMIZATION_LEVELS[parameters.get("graph_optimization", "all")]
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(version_dir, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [(t["name"], [int(d) for d in t["dims"]]) for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def _arrays(self, request):
        arrays = {}
        for name, dims in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            array = tensor.as_numpy()
            if list(array.shape[1:]) != dims:
                raise ValueError(f"input {name!r} has shape {list(array.shape)}, expected [N, {dims}]")
            arrays[name] = np.ascontiguousarray(array, dtype=np.float32)
        return arrays

    def execute(self, requests):
        responses = [None] * len(requests)
        batches, owners = [], []
        for index, request in enumerate(requests):
            try:
                batches.append(self._arrays(request))
                owners.append(index)
            except ValueError as error:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
        if batches:
            feed = {name: np.concatenate([b[name] for b in batches]) for name, _ in self.inputs}
            sizes = [len(b[self.inputs[0][0]]) for b in batches]
            try:
                results = self.session.run(self.outputs, feed)
            except Exception as error:  # answer every request rather than crash the stub
                for index in owners:
                    responses[index] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"inference failed: {error}")
                    )
                return responses
            offsets = np.cumsum([0, *sizes])
            for slot, index in enumerate(owners):
                lo, hi = offsets[slot], offsets[slot + 1]
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(result[lo:hi]))
                    for name, result in zip(self.outputs, results, strict=True)
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def finalize(self):
        self.session = None
