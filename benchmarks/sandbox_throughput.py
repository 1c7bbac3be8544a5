"""How many events a second the sandbox takes, next to a bare endpoint, in the same run.

    .venv/bin/python -m benchmarks.sandbox_throughput [--seconds 3] [--connections 1,4,16]

Both servers run in their own processes on 127.0.0.1 (so the client never shares their
interpreter): the sandbox (``pdconnect sandbox --rate-limit off``), validating each event and
applying PagerDuty's dedup semantics, and a bare ``http.server`` endpoint that answers every
POST with a fixed 202, the least a Python HTTP server can do. Clients are threads in a third
process posting keep-alive requests with ``http.client``. The ratio says how much the
sandbox's work costs; its absolute figure says whether it can be a sender benchmark's bottleneck.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import machine, start_server, stop_server

BARE_SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = b'{"status":"success","message":"Event processed","dedup_key":"k"}'
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"bare endpoint on http://127.0.0.1:{server.server_address[1]}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
"""


def routing_key(url: str) -> str:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    connection.request("GET", "/_sandbox/api/state")
    state = json.loads(connection.getresponse().read())
    connection.close()
    return str(state["services"][0]["integration_keys"][0]["id"])


def hammer(url: str, key: str, connections: int, seconds: float) -> float:
    """Events a second with ``connections`` keep-alive clients, over ``seconds``."""
    host, port = url.removeprefix("http://").split(":")
    counts = [0] * connections
    stop = threading.Event()

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, int(port))
        n = 0
        while not stop.is_set():
            action = "trigger" if n % 2 == 0 else "resolve"
            event = {"routing_key": key, "event_action": action, "dedup_key": f"c{index}-{n // 2}"}
            if action == "trigger":
                event["payload"] = {"summary": "bench", "source": "bench", "severity": "info"}
            body = json.dumps(event).encode()
            connection.request("POST", "/v2/enqueue", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status not in (200, 202):
                raise SystemExit(f"unexpected status {response.status}")
            n += 1
        counts[index] = n
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)  # the measuring window, not synchronisation
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def run(seconds: float = 3.0, levels: tuple[int, ...] = (1, 4, 16)) -> str:
    pdconnect = str(Path(sys.executable).parent / "pdconnect")
    lines = [f"The sandbox against a bare http.server endpoint, {seconds:g} s per cell; {machine()}", ""]
    sandbox, sandbox_url = start_server(
        [pdconnect, "sandbox", "--port", "0", "--rate-limit", "off"], r"PagerDuty sandbox on (http://\S+)"
    )
    try:
        bare, bare_url = start_server([sys.executable, "-c", BARE_SERVER], r"bare endpoint on (http://\S+)")
    except BaseException:
        stop_server(sandbox)
        raise
    try:
        key = routing_key(sandbox_url)
        lines.append("| connections | bare endpoint (events/s) | sandbox (events/s) | sandbox / bare |")
        lines.append("|---:|---:|---:|---:|")
        for connections in levels:
            bare_rate = hammer(bare_url, key, connections, seconds)
            sandbox_rate = hammer(sandbox_url, key, connections, seconds)
            lines.append(f"| {connections} | {bare_rate:,.0f} | {sandbox_rate:,.0f} | {sandbox_rate / bare_rate:.2f} |")
    finally:
        stop_server(sandbox)
        stop_server(bare)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", default="1,4,16")
    args = parser.parse_args()
    print(run(args.seconds, tuple(int(n) for n in args.connections.split(","))))


if __name__ == "__main__":
    main()
