"""Reading Triton's queue length from its metrics text, as the rollout drain does."""

from __future__ import annotations

import pytest

from orchestrator.clients.triton_control import pending_requests

pytestmark = pytest.mark.unit

# Shaped like Triton's /metrics: several models and versions, labels in both orders, other
# metrics with the same labels, a GPU metric with other labels, and a histogram.
TRITON_METRICS = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="arcface",version="1"} 1520
nv_inference_request_success{model="arcface",version="2"} 310
nv_inference_request_success{model="scrfd",version="1"} 1830
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="arcface",version="1"} 48211
nv_inference_queue_duration_us{model="scrfd",version="1"} 90123
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting \
execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="arcface",version="1"} 4
nv_inference_pending_request_count{version="2",model="arcface"} 9
nv_inference_pending_request_count{model="arcface",version="11"} 6
nv_inference_pending_request_count{version="1",model="scrfd"} 17
nv_inference_pending_request_count{model="genderage",version="1"} 0
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-7a3c9e2f-0d41-4b6e-9f1a-2c8d5e6b7a90"} 0.42
# HELP nv_inference_first_response_histogram_ms Duration from request to first response in ms
# TYPE nv_inference_first_response_histogram_ms histogram
nv_inference_first_response_histogram_ms_count{model="arcface",version="1"} 1520
nv_inference_first_response_histogram_ms_sum{model="arcface",version="1"} 20512
nv_inference_first_response_histogram_ms_bucket{model="arcface",version="1",le="10"} 1200
nv_inference_first_response_histogram_ms_bucket{model="arcface",version="1",le="+Inf"} 1520
"""


@pytest.mark.parametrize(
    ("model", "version", "expected"),
    [
        ("arcface", "1", 4),
        ("arcface", "2", 9),  # labels written version first
        ("arcface", "11", 6),  # not confused with version 1
        ("scrfd", "1", 17),  # version first, and another model
        ("genderage", "1", 0),
        ("arcface", "3", 0),  # a version Triton does not serve
        ("yolo", "1", 0),  # a model Triton does not serve
    ],
)
def test_pending_requests_match_labels_by_value_not_order(model: str, version: str, expected: int) -> None:
    assert pending_requests(TRITON_METRICS, model, version) == expected


def test_pending_requests_are_zero_when_triton_does_not_report_the_metric() -> None:
    without = "\n".join(
        line for line in TRITON_METRICS.splitlines() if "nv_inference_pending_request_count" not in line
    )
    assert "nv_inference_request_success" in without
    assert pending_requests(without + "\n", "arcface", "1") == 0
    assert pending_requests("", "arcface", "1") == 0


def test_pending_requests_add_up_samples_split_by_an_extra_label() -> None:
    text = (
        "# TYPE nv_inference_pending_request_count gauge\n"
        'nv_inference_pending_request_count{gpu_uuid="GPU-a",model="arcface",version="1"} 2\n'
        'nv_inference_pending_request_count{version="1",model="arcface",gpu_uuid="GPU-b"} 3\n'
        'nv_inference_pending_request_count{model="arcface",version="2",gpu_uuid="GPU-a"} 8\n'
    )
    assert pending_requests(text, "arcface", "1") == 5
    assert pending_requests(text, "arcface", "2") == 8


def test_text_that_is_not_metrics_is_an_error_not_an_empty_queue() -> None:
    with pytest.raises(ValueError):
        pending_requests("<html><body>502 Bad Gateway</body></html>\n", "arcface", "1")
