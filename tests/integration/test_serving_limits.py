"""The model server against resource bombs, the V2 binary-data extension, odd numbers and exposure
(issue 10, items 3-5), as a real server process on 127.0.0.1 with short header/body timeouts."""
import json
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.conftest import free_port, start_process, stop_process, wait_http

pytestmark = pytest.mark.integration
RECORD = {"MedInc": 3.0, "HouseAge": 20.0, "AveRooms": 5.0, "AveBedrms": 1.0, "Population": 1000.0, "AveOccup": 3.0,
          "Latitude": 35.0, "Longitude": -120.0}
TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(python, regression_run, tmp_path_factory):
    """No --host given: the server must choose 127.0.0.1 itself."""
    _, p = regression_run
    port = free_port()
    log = tmp_path_factory.mktemp("limits") / "server.log"
    proc = start_process([python, "-m", "serving", "--model_dir", str(p["model"]), "--model_name", "housing",
                          "--http_port", str(port), "--header_timeout_s", str(TIMEOUT_S),
                          "--body_timeout_s", str(TIMEOUT_S)], log)
    wait_http(f"http://127.0.0.1:{port}/v2/health/ready", proc, 90, log)
    yield proc, port, f"http://127.0.0.1:{port}"
    stop_process(proc)


def rss_mb(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1)) / 1024


POLLER = """
import json, sys, threading, time, requests
url, stop, lat, codes = sys.argv[1], threading.Event(), [], []
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
with requests.Session() as session:
    session.get(url, timeout=30)  # connected and warm before timing starts
    print("ready", flush=True)
    while not stop.is_set():
        start = time.perf_counter()
        try:
            codes.append(session.get(url, timeout=5).status_code)
        except requests.RequestException:
            codes.append(0)
        lat.append((time.perf_counter() - start) * 1e3)
        stop.wait(0.02)
print(json.dumps({"latencies_ms": lat, "codes": codes}), flush=True)
"""


class ReadyWatch:
    """Times /v2/health/ready every 20 ms on one kept-alive connection while a test runs, from its own
    process (the test's threads cannot delay it); with a pid, samples the server's RSS too
    (``rss_growth_mb``: the peak over the RSS at the start)."""

    def __init__(self, url: str, pid: int | None = None):
        self.url, self.pid, self.latencies_ms, self.codes = f"{url}/v2/health/ready", pid, [], []
        self.rss_start = self.rss_peak = rss_mb(pid) if pid else 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_peak - self.rss_start

    def _sample(self):
        while not self._stop.wait(0.02):
            if self.pid:
                self.rss_peak = max(self.rss_peak, rss_mb(self.pid))

    def __enter__(self):
        self._poller = subprocess.Popen([sys.executable, "-c", POLLER, self.url], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self._poller.stdout.readline().strip() == "ready"
        self._thread.start()
        return self

    def __exit__(self, *exc):
        out, _ = self._poller.communicate("", timeout=30)
        result = json.loads(out.strip().splitlines()[-1])
        self.latencies_ms, self.codes = result["latencies_ms"], result["codes"]
        self._stop.set()
        self._thread.join()
        if self.pid:
            self.rss_peak = max(self.rss_peak, rss_mb(self.pid))


def read_answer(sock: socket.socket) -> bytes:
    """What the server wrote before it closed the connection."""
    sock.settimeout(5)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:  # reset after the answer: the rest of the body was never read
        pass
    return answer


# --- item 5: loopback only ------------------------------------------------------------------
def test_listens_on_loopback_only_unless_asked(server):
    proc, port, _ = server
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"], f"listening on {listening}, expected 127.0.0.1 only"


# --- item 3: streamed bodies, slow clients -----------------------------------------------------
def stream_chunked(port: int, path: str, total: int, pid: int | None = None) -> tuple[bytes, int, float, float]:
    """POST ``total`` bytes chunked (no Content-Length) until the server answers or closes; returns the
    answer, the bytes sent, the seconds taken and the server's peak RSS meanwhile (MB)."""
    chunk = b"1," * 32768
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    peak = rss_mb(pid) if pid else 0.0
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /%s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" % path.encode())
    sent, start = 0, time.monotonic()
    try:
        while sent < total and not select.select([sock], [], [], 0)[0]:
            sock.sendall(frame)
            sent += len(chunk)
            if pid and sent % (4 << 20) < len(chunk):
                peak = max(peak, rss_mb(pid))
    except OSError:
        pass  # the server closed the connection at the limit
    answer = read_answer(sock)
    sock.close()
    return answer, sent, time.monotonic() - start, max(peak, rss_mb(pid)) if pid else 0.0


def test_a_300_mb_chunked_body_is_refused_at_the_limit(server):
    """No Content-Length: the limit counts the bytes as they stream in, and the connection is closed."""
    proc, port, url = server
    before = rss_mb(proc.pid)
    answer, sent, elapsed, peak = stream_chunked(port, "v1/models/housing:predict", 300_000_000, proc.pid)
    assert answer.startswith(b"HTTP/1.1 413") and b"counted as it streamed in" in answer, answer[:300]
    assert sent < 64 << 20, f"{sent:,} bytes accepted before the refusal"
    assert elapsed < 10 and peak - before < 200, (elapsed, before, peak)
    small = b'{"instances": [' + json.dumps(RECORD).encode() + b"]}"
    ok = requests.post(f"{url}/v1/models/housing:predict", data=iter([small[:10], small[10:]]),
                       headers={"Content-Type": "application/json"})  # a chunked body under the limit
    assert ok.status_code == 200, ok.text


def test_slow_headers_and_bodies_are_cut_off(server):
    """500 connections that send no or half headers, one trickling body, one endless header: all closed
    within the timeouts, and readiness answers fast meanwhile."""
    _, port, url = server
    conns = []
    for i in range(500):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 2:
            sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n")
        conns.append(sock)
    body = socket.create_connection(("127.0.0.1", port), timeout=10)
    body.sendall(b"POST /v1/models/housing:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")
    start, open_ = time.monotonic(), set(range(len(conns)))
    with ReadyWatch(url) as watch:
        while open_ and time.monotonic() - start < TIMEOUT_S + 6:
            for i in list(open_):
                try:
                    conns[i].sendall(b"X-Slow: 1\r\n" if i % 2 else b"G")
                except OSError:
                    open_.discard(i)
            try:
                body.sendall(b" ")
            except OSError:
                pass
            time.sleep(0.25)
    elapsed = time.monotonic() - start
    assert not open_, f"{len(open_)} of {len(conns)} slow-header connections still open after {elapsed:.1f} s"
    assert elapsed < TIMEOUT_S + 4
    assert read_answer(conns[1]).startswith(b"HTTP/1.1 408")
    answer = read_answer(body)
    assert answer.startswith(b"HTTP/1.1 408") and b"request body did not arrive" in answer, answer
    for sock in conns + [body]:
        sock.close()
    assert set(watch.codes) == {200} and max(watch.latencies_ms) < 100, (set(watch.codes), max(watch.latencies_ms))
    flood = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        flood.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (4 << 20))
    except OSError:
        pass
    assert read_answer(flood).startswith(b"HTTP/1.1 431")
    flood.close()


# --- item 4: the V2 binary-data extension and odd numbers ------------------------------------
def binary_request(url, header=None, sizes=(), tail=b"", datatype="FP64"):
    inputs, raw = [], b""
    for name, value in RECORD.items():
        data = struct.pack("<d", value)
        raw += data
        inputs.append({"name": name, "shape": [1], "datatype": datatype, "parameters": {"binary_data_size": len(data)}})
    for i, size in sizes:
        inputs[i]["parameters"]["binary_data_size"] = size
    head = json.dumps({"inputs": inputs}).encode()
    return requests.post(f"{url}/v2/models/housing/infer", data=head + raw + tail, timeout=30,
                         headers={"Content-Type": "application/octet-stream",
                                  "Inference-Header-Content-Length": header or str(len(head))})


@pytest.mark.parametrize("kwargs,reason", [
    ({"header": "abc"}, "Inference-Header-Content-Length must be"),
    ({"header": "-5"}, "Inference-Header-Content-Length must be"),
    ({"header": "99999999"}, "the body holds"),
    ({"header": "7"}, "are not JSON"),
    ({"sizes": [(0, -8)]}, "input 'MedInc': binary_data_size must be a whole number"),
    ({"sizes": [(0, True)]}, "input 'MedInc': binary_data_size must be a whole number"),
    ({"sizes": [(1, "8")]}, "input 'HouseAge': binary_data_size must be a whole number"),
    ({"sizes": [(0, 4)]}, "input 'MedInc': 4 bytes of FP64 cannot hold shape [1]"),
    ({"sizes": [(7, 10**15)]}, "input 'Longitude': binary_data_size is 1,000,000,000,000,000"),
    ({"tail": b"\x00\x01"}, "2 bytes follow the last binary input"),
    ({"datatype": "BYTES"}, "input 'MedInc':"),
    ({"datatype": "FP8"}, "input 'MedInc': datatype 'FP8' is not one of"),
])
def test_binary_data_extension_errors_are_400_naming_the_input(server, kwargs, reason):
    _, _, url = server
    resp = binary_request(url, **kwargs)
    assert resp.status_code == 400 and reason in resp.json()["error"], (resp.status_code, resp.text)


def test_binary_data_extension_still_answers(server):
    _, _, url = server
    resp = binary_request(url)
    assert resp.status_code == 200 and len(resp.json()["outputs"][0]["data"]) == 1, resp.text


def v2_body(record, datatype="FP64"):
    return {"inputs": [{"name": k, "shape": [1], "datatype": datatype, "data": [v]} for k, v in record.items()]}


@pytest.mark.parametrize("route,body,reason", [
    ("v1", {"instances": [{**RECORD, "MedInc": 1e308}]}, "feature 'MedInc' must be a finite number within"),
    ("v1", {"instances": [{**RECORD, "HouseAge": -1e300}]}, "feature 'HouseAge' must be a finite number within"),
    ("v1", {"instances": [{**RECORD, "MedInc": True}]}, "feature 'MedInc' expects a number, got true"),
    ("v1", {"instances": [[*list(RECORD.values())[:-1], False]]}, "feature 'Longitude' expects a number, got false"),
    ("v2", v2_body({**RECORD, "AveRooms": 1e308}), "feature 'AveRooms' must be a finite number within"),
    ("v2", v2_body({**RECORD, "AveRooms": True}), "input 'AveRooms' expects numbers"),
    ("v2", {"inputs": [*v2_body(RECORD)["inputs"][1:], {"name": "MedInc", "shape": [1], "datatype": "BOOL",
                                                        "data": [True]}]}, "input 'MedInc' expects numbers"),
    ("v1", {"instances": [{k: 1e38 for k in RECORD}]}, "instance 0: the model gives no finite answer"),
    ("v2", v2_body({k: 1e38 for k in RECORD}), "out of the training range: MedInc=1e+38"),
])
def test_odd_numbers_get_400_and_no_answer_holds_a_non_finite_number(server, route, body, reason):
    _, _, url = server
    path = "v1/models/housing:predict" if route == "v1" else "v2/models/housing/infer"
    resp = requests.post(f"{url}/{path}", json=body, timeout=30)
    assert resp.status_code == 400 and reason in resp.json()["error"], (resp.status_code, resp.text)
    assert "null" not in resp.text and "NaN" not in resp.text
