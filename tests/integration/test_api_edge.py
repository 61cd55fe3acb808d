"""The API's edge against a real `switchboard api` process (uvicorn, over TCP): 200 MB bodies to
every route that takes one — declared by Content-Length or streamed chunked — get 413 while the
process's memory stays flat, and a body that never finishes arriving gets 408."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import free_port
from tests.support.env import child_env

OPERATOR_KEY = "sbo_" + uuid.uuid4().hex
INGEST_KEY = "sbk_" + uuid.uuid4().hex
BODY_BYTES = 200 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = child_env(
        SWITCHBOARD_DATA_DIR=str(tmp_path), SWITCHBOARD_API_PORT=str(port), SWITCHBOARD_LOG_LEVEL="WARNING",
        SWITCHBOARD_OPERATOR_KEYS=OPERATOR_KEY, SWITCHBOARD_INGEST_KEYS=INGEST_KEY,
        SWITCHBOARD_STRIPE_WEBHOOK_SECRET="whsec_" + uuid.uuid4().hex,
        SWITCHBOARD_HUBSPOT_CLIENT_SECRET=uuid.uuid4().hex, SWITCHBOARD_API_BODY_TIMEOUT_S="2",
    )  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "switchboard", "api"], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "api exited"
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code in (200, 503):
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.2)
    try:
        yield base, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def _body_operations(base: str) -> list[tuple[str, dict[str, str]]]:
    """Every operation the OpenAPI document says takes a body, with the key it needs."""
    paths = httpx.get(f"{base}/openapi.json").json()["paths"]
    found = []
    for path, operations in paths.items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert method == "post", (method, path)
                concrete = path.replace("{approval_id}", "1").replace("{run_id}", "run_none")
                key = INGEST_KEY if path.startswith(("/api/events", "/api/backfill")) else OPERATOR_KEY
                found.append((concrete, {"Authorization": f"Bearer {key}"}))
    return found


def _post(port: int, path: str, headers: dict[str, str], *, chunked: bool) -> tuple[int, bytes, int]:
    """POST a 200 MB body over a raw socket, as fast as the server takes it, until it answers;
    returns the status, the response body, and how many body bytes the server took."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY_BYTES}"
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{head}{framing}\r\n\r\n"
    )
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request.encode())
        sock.settimeout(0.05)
        answer = b""
        try:
            while sent < BODY_BYTES:
                try:
                    answer += sock.recv(65536)
                    if answer:
                        break
                except TimeoutError:
                    pass
                frame = (b"%x\r\n" % len(CHUNK)) + CHUNK + b"\r\n" if chunked else CHUNK
                sock.settimeout(5)
                sock.sendall(frame)
                sock.settimeout(0.05)
                sent += len(CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        try:
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        except (ConnectionResetError, TimeoutError):
            pass
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2], sent


def test_200_mb_bodies_to_every_body_route_get_413_and_the_api_stays_small(api: tuple[str, int]) -> None:
    base, pid = api
    port = int(base.rsplit(":", 1)[1])
    operations = _body_operations(base)
    assert {path for path, _ in operations} >= {
        "/api/events", "/api/events/batch", "/api/webhooks/stripe", "/api/webhooks/hubspot", "/api/backfill",
    }  # fmt: skip
    httpx.post(f"{base}/api/events", content=b"{}", headers={"Authorization": f"Bearer {INGEST_KEY}"})  # warm up
    rss_before, peak_before = _rss_kb(pid, "VmRSS"), _rss_kb(pid, "VmHWM")
    results = []
    for path, headers in operations:
        for chunked in (False, True):
            status, body, sent = _post(port, path, headers, chunked=chunked)
            results.append((path, chunked, status, sent))
            assert status == 413, (path, chunked, status, body)
            assert b"exceeds the limit of" in body, body
            assert sent < BODY_BYTES // 4, (path, chunked, sent)  # refused long before the end
    peak_growth_mb = (_rss_kb(pid, "VmHWM") - peak_before) / 1024
    rss_growth_mb = (_rss_kb(pid, "VmRSS") - rss_before) / 1024
    print(f"\nbody_routes={len(operations)} posts={len(results)} peak_rss_growth_mb={peak_growth_mb:.1f} "
          f"rss_growth_mb={rss_growth_mb:.1f}")  # fmt: skip
    assert peak_growth_mb < 20, results
    # the API still serves
    assert httpx.get(f"{base}/api/health").status_code in (200, 503)


def test_a_body_that_does_not_arrive_in_time_gets_408(api: tuple[str, int]) -> None:
    base, _pid = api
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {INGEST_KEY}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"source":'.encode()
        )
        started = time.monotonic()
        answer = b""
        while b"}" not in answer:
            more = sock.recv(4096)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 2 s" in answer
    assert 1.5 < time.monotonic() - started < 8
