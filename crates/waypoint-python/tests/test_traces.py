"""Traces from Python workflows: with the OTEL_* variables set, a workflow's run and each
attempt of its steps reach an OTLP/HTTP collector as the same ``waypoint.run`` and
``waypoint.step`` spans as plan-file runs (the engine makes them for every surface), flushed at
the interpreter's exit; an unreachable collector costs at most two seconds and one warning."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from conftest import run_python

WORKFLOW = """
    import sys, waypoint
    tries = []
    def flaky():
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("not yet")
        return len(tries)
    with waypoint.open(sys.argv[1]).workflow("py-traced") as run:
        run.step("fetch", lambda: 41)
        print(run.step("flaky", flaky, retries=1, retry_delay=0.01))
"""


class Collector:
    """An OTLP/HTTP receiver for the JSON protocol that keeps every span it receives."""

    def __init__(self) -> None:
        self.spans: List[Dict[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                assert self.path == "/v1/traces", self.path
                assert self.headers.get("content-type", "").startswith("application/json")
                request = json.loads(body)
                for resource in request.get("resourceSpans", []):
                    service = {a["key"]: a["value"] for a in resource["resource"]["attributes"]}
                    for scope in resource.get("scopeSpans", []):
                        for span in scope.get("spans", []):
                            span["service"] = service["service.name"]["stringValue"]
                            collector.spans.append(span)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def named(self, name: str) -> List[Dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name]


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.server.shutdown()


def attributes(span: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for pair in span.get("attributes", []):
        value = pair["value"]
        out[pair["key"]] = value.get("stringValue", int(value["intValue"]) if "intValue" in value else value)
    return out


def test_a_python_workflow_exports_the_engine_spans(collector: Collector, tmp_path: Path) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_SERVICE_NAME": "py-workflows",
    }
    done = run_python(WORKFLOW, str(tmp_path / "store"), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert done.stderr == ""

    (run,) = collector.named("waypoint.run")
    assert run["service"] == "py-workflows"
    assert attributes(run)["waypoint.plan.id"] == "py-traced"
    steps = collector.named("waypoint.step")
    shape = [
        (a["waypoint.step.number"], a["waypoint.step.name"], a["waypoint.step.attempt"], a["waypoint.step.outcome"])
        for a in map(attributes, steps)
    ]
    assert sorted(shape) == [(1, "fetch", 1, "completed"), (2, "flaky", 1, "failed"), (2, "flaky", 2, "completed")]
    for step in steps:
        assert step["traceId"].lower() == run["traceId"].lower()
        assert step["parentSpanId"].lower() == run["spanId"].lower()
    (failed,) = [s for s in steps if attributes(s)["waypoint.step.outcome"] == "failed"]
    assert failed["status"]["code"] in (2, "STATUS_CODE_ERROR")
    assert "not yet" in failed["status"]["message"]


def test_an_unreachable_collector_costs_at_most_two_seconds_and_one_warning(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    untraced = run_python(WORKFLOW, str(tmp_path / "one"))
    baseline = time.monotonic() - started
    assert untraced.returncode == 0 and untraced.stderr == "", untraced.stderr
    started = time.monotonic()
    traced = run_python(WORKFLOW, str(tmp_path / "two"), env={"OTEL_EXPORTER_OTLP_ENDPOINT": closed})
    extra = time.monotonic() - started - baseline
    assert traced.returncode == 0, traced.stderr
    assert extra <= 2.0, f"an unreachable collector cost {extra:.2f}s"
    lines = traced.stderr.splitlines()
    assert len(lines) == 1 and "not exported" in lines[0], traced.stderr
