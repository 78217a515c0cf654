"""``mest nginx``'s configuration, run by Debian's nginx in front of ``mest serve`` on loopback.

The Mest side is deliberately fragile, one gthread worker with two threads: without a buffering proxy two
slow clients would hold both threads. nginx, started with the generated ``--standalone`` file in its own
prefix on an ephemeral port (and stopped by its PID), must keep every slow client away from the worker, so a
normal client is answered every time, and answer an oversized body with Mest's JSON 413.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.mest_serve import mest_argv, running, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/install-system-deps)"),
]

LIMIT = 1024 * 1024  # basic_app's max_body_size
SLOW = 40  # slow connections: half trickle their head, half their body
NORMAL = 20


def _free_port() -> int:
    with socket.socket() as probe:  # nginx cannot bind port 0 and report it: take a free one
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _nginx(prefix: Path, upstream: str) -> Iterator[str]:
    port = _free_port()
    args = ["--upstream", upstream, "--listen", f"127.0.0.1:{port}", "--max-body-size", str(LIMIT),
            "--standalone"]
    if os.geteuid() == 0:  # as root, nginx's workers would switch to nobody, who cannot enter pytest's tmp dir
        args += ["--user", getpass.getuser()]
    config = subprocess.run([sys.executable, "-m", "mest", "nginx", *args], capture_output=True, text=True,
                            check=True).stdout
    (prefix / "tmp").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(config)
    log = (prefix / "nginx.log").open("w")
    proc = subprocess.Popen([NGINX or "nginx", "-p", str(prefix), "-c", "nginx.conf"], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.poll() is None, (prefix / "nginx.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(url + "/health/live", timeout=2).status_code == 200
            return False

        wait_for(up, 30, "nginx to proxy /health/live")
        yield url
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful stop, by PID
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _trickle(port: int, index: int, stop: threading.Event, sockets: list[socket.socket]) -> None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return
    sockets.append(sock)
    if index % 2:
        rest = b"POST /sum HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nX-Slow: 1\r\n\r\n"
    else:
        sock.sendall(b"POST /sum HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        rest = b'{"features": [' + b" " * 900
    for byte in rest:
        if stop.wait(0.5):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def test_slow_clients_never_reach_the_worker_and_limits_match(tmp_path: Path) -> None:
    argv = mest_argv("basic_app:app", "-k", "gthread", "-w", "1", "--threads", "2")
    with running(argv) as server, _nginx(tmp_path / "nginx", server.url.removeprefix("http://")) as url:
        port = int(url.rsplit(":", 1)[1])
        stop = threading.Event()
        sockets: list[socket.socket] = []
        slow = [threading.Thread(target=_trickle, args=(port, i, stop, sockets), daemon=True) for i in range(SLOW)]
        try:
            for thread in slow:
                thread.start()
            wait_for(lambda: len(sockets) == SLOW, 30, "the slow clients to connect")
            with httpx.Client(base_url=url, timeout=20) as client:
                answers = [client.post("/sum", json={"features": [i, 1]}) for i in range(NORMAL)]
            assert [a.status_code for a in answers] == [200] * NORMAL
            assert [a.json()["sum"] for a in answers] == [i + 1.0 for i in range(NORMAL)]

            # urllib sends the whole body before reading: nginx's answer still arrives, in Mest's shape.
            body = b"[" + b"1," * LIMIT + b"1]"
            request = urllib.request.Request(url + "/sum", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=30)
            assert caught.value.code == 413
            payload = json.loads(caught.value.read())
            assert payload["code"] == "payload_too_large" and payload["status"] == 413 and payload["request_id"]
        finally:
            stop.set()
            for thread in slow:
                thread.join(10)
            for sock in sockets:
                sock.close()
