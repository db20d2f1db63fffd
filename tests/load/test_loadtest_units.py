"""Pure parts of the load-test tooling: no server."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import psutil
import pytest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from loadtests.cpu_usage import cpu_seconds, per_request_ms
from loadtests.locust_run import read_summary
from loadtests.memory import RssSamples, parse_watch
from loadtests.multipart import multipart
from loadtests.probes import check_recognition
from loadtests.report import Target, interleaved
from loadtests.stack import Stack, write_unbatched_repository
from loadtests.triton_stats import ModelCounters, between
from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.repository import model_config, parse, render
from orchestrator.runtime.triton_server import TritonServer
from tests.support.processes import MilvusLiteProcess, SearchServiceProcess

pytestmark = pytest.mark.unit


def test_unbatched_repository_drops_only_dynamic_batching(tmp_path: Path) -> None:
    source = tmp_path / "cpu"
    for spec in DEFAULT_MODELS:
        (source / spec.name / "1").mkdir(parents=True)
        (source / spec.name / "config.pbtxt").write_text(render(model_config(spec, "cpu")))
    target = write_unbatched_repository(source, tmp_path / "unbatched")
    for spec in DEFAULT_MODELS:
        config = parse((target / spec.name / "config.pbtxt").read_text())
        assert not config.HasField("dynamic_batching")
        assert config.max_batch_size == spec.max_batch_size
        assert config.parameters["graph_optimization"].string_value == spec.cpu_graph_optimization
        assert (target / spec.name / "1").resolve() == (source / spec.name / "1").resolve()


def test_step_batching_is_a_difference_of_counters() -> None:
    before = {"arcface": ModelCounters(inferences=10, executions=10, successes=10, queue_ns=0)}
    after = {"arcface": ModelCounters(inferences=50, executions=20, successes=30, queue_ns=40_000_000)}
    step = between(before, after)["arcface"]
    assert step.average_batch == 4.0
    assert step.queue_ms == 2.0
    idle = between(after, after)["arcface"]
    assert math.isnan(idle.average_batch) and math.isnan(idle.queue_ms)


def test_rss_verdict_flat_and_growing() -> None:
    samples = RssSamples({"flat": 1, "leak": 2})
    samples.times = [float(i) for i in range(40)]
    samples.values = {
        "flat": [500 * 2**20 + (i % 3) * 2**20 for i in range(40)],
        "leak": [500 * 2**20 + i * 20 * 2**20 for i in range(40)],
    }
    verdicts = {v.name: v for v in samples.verdicts()}
    assert verdicts["flat"].flat
    assert not verdicts["leak"].flat
    assert parse_watch("orchestrator=12, triton=34") == {"orchestrator": 12, "triton": 34}


def test_locust_summary_is_read_from_the_aggregated_row(tmp_path: Path) -> None:
    stats = tmp_path / "run_stats.csv"
    stats.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
        "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
        "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
        "POST,/v1/recognize,100,1,120,130,50,400,900,9.5,0.1,120,130,140,150,200,250,300,350,400,400,400\n"
        ",Aggregated,100,1,120,130,50,400,900,9.5,0.1,120,130,140,150,200,250,300,350,400,400,400\n"
    )
    summary = read_summary(stats, 0)
    assert (summary.requests, summary.failures, summary.throughput) == (100, 1, 9.5)
    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms) == (120, 250, 350)
    assert summary.fail_ratio == 0.01


def test_multipart_body_parses_back() -> None:
    body, content_type = multipart("file", "a.jpg", b"\xff\xd8data")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert message.get_content_type() == "multipart/form-data"
    (part,) = message.iter_parts()
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == "a.jpg"
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_payload(decode=True) == b"\xff\xd8data"


async def test_multipart_body_is_read_by_the_api_parser() -> None:
    """The parser the orchestrator's upload routes use, on bytes a boundary search could trip on."""
    data = b"\xff\xd8\xff\xe0\r\n--\r\n" + bytes(range(256)) * 64
    body, content_type = multipart("file", "probe.jpg", data)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    form = await MultiPartParser(Headers({"content-type": content_type}), chunks()).parse()
    try:
        assert list(form.keys()) == ["file"]
        upload = form["file"]
        assert isinstance(upload, UploadFile)
        assert (upload.filename, upload.content_type) == ("probe.jpg", "application/octet-stream")
        assert await upload.read() == data
    finally:
        await form.close()


def test_wrong_person_is_a_failure() -> None:
    answer = {"faces": [{"decision": "match", "matches": [{"name": "Joe Biden", "similarity": 0.7}]}]}
    check_recognition(answer, "Joe Biden")
    with pytest.raises(AssertionError, match="expected 'Barack Obama'"):
        check_recognition(answer, "Barack Obama")
    with pytest.raises(AssertionError, match="no face"):
        check_recognition({"faces": []}, "Joe Biden")
    unknown = {"faces": [{"decision": "unknown", "matches": [{"name": "Joe Biden", "similarity": 0.2}]}]}
    with pytest.raises(AssertionError, match="decision unknown"):
        check_recognition(unknown, "Joe Biden")


_BURN_IN_CHILD = """
import subprocess, sys
code = '''
import sys, time
start = time.process_time()
while time.process_time() - start < 0.5:
    pass
open(sys.argv[1], "w").close()
time.sleep(60)
'''
subprocess.Popen([sys.executable, "-c", code, sys.argv[1]]).wait()
"""


def test_cpu_of_a_child_counts_for_its_parent(tmp_path: Path) -> None:
    """Triton's inference runs in its stubs, children of tritonserver: they must be counted."""
    done = tmp_path / "burned"
    parent = subprocess.Popen([sys.executable, "-c", _BURN_IN_CHILD, str(done)])
    try:
        deadline = time.monotonic() + 30
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done.exists()
        used = cpu_seconds({"tree": parent.pid, "gone": 2**22 + 7})
        assert set(used) == {"tree"}  # a process that does not exist is left out
        assert 0.45 <= used["tree"] < 5.0
        ms = per_request_ms({"tree": 0.0}, used, requests=10)
        assert ms == {"tree": pytest.approx(100 * used["tree"])}
        assert per_request_ms({"tree": 0.0}, used, requests=0) == {}
    finally:
        for process in psutil.Process(parent.pid).children(recursive=True):
            process.kill()
        parent.kill()
        parent.wait()


def test_variants_are_interleaved_in_alternating_order() -> None:
    targets = [Target(v, f"http://{v}", {}, None, {}) for v in ("a", "b", "c")]
    order = [(t.variant, n) for t, n in interleaved(targets, [1, 2, 4])]
    assert order == [("a", 1), ("b", 1), ("c", 1), ("c", 2), ("b", 2), ("a", 2), ("a", 4), ("b", 4), ("c", 4)]


@pytest.mark.parametrize("backend", ["faiss", "milvus"])
def test_a_load_stack_runs_on_the_chosen_search_backend(tmp_path: Path, backend: str) -> None:
    # `locust_run soak --start-stack --backend milvus` soaks the Milvus path, as `up` runs it.
    triton = cast(TritonServer, SimpleNamespace(grpc_url="127.0.0.1:1", pid=None))
    stack = Stack(tmp_path, tmp_path, triton=triton, backend=backend)
    assert stack.api.env["FACEREC_SEARCH__BACKEND"] == backend
    if backend == "milvus":
        assert isinstance(stack.search, MilvusLiteProcess)
        assert stack.api.env["FACEREC_SEARCH__MILVUS_URI"] == stack.search.url
        assert stack.api.env["FACEREC_SEARCH_URLS"] is None
    else:
        assert isinstance(stack.search, SearchServiceProcess)
        assert stack.search.url in stack.api.env["FACEREC_SEARCH_URLS"]
