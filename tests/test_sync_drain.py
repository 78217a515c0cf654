"""``mest serve --worker-class sync`` on ``SIGTERM``: connections the kernel already accepted are answered.

A sync worker handles one request at a time, so while it is busy further connections wait in the listening
socket's queue. The test holds one request in ``infer`` (``tests/apps/lifecycle_app.py``'s gate), queues
complete requests behind it on raw sockets, sends ``SIGTERM`` and opens the gate: every queued request must
get its own complete answer (gunicorn's stock sync worker resets them).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from support.mest_serve import mest_argv, running, wait_for

pytestmark = pytest.mark.server

QUEUED = 6


def _started(lab: Path) -> list[str]:
    log = lab / "started.log"
    return log.read_text().split() if log.exists() else []


def _answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_sigterm_answers_every_connection_already_queued(tmp_path: Path) -> None:
    (tmp_path / "gate-closed").touch()
    argv = mest_argv("lifecycle_app:app", "-k", "sync", "-w", "1", "--graceful-timeout", "60")
    with running(argv, env={"LIFECYCLE_DIR": str(tmp_path)}) as server:
        parts = urlsplit(server.url)
        held: list[httpx.Response] = []
        holder = threading.Thread(
            target=lambda: held.append(httpx.post(server.url + "/held", json={"id": "held"}, timeout=90)),
            daemon=True,
        )
        holder.start()
        wait_for(lambda: _started(tmp_path) == ["held"], 30, "the held request to reach the app", server)
        queued = []
        for i in range(QUEUED):  # connected (the kernel completed the handshake) and sent, never accepted yet
            sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
            body = json.dumps({"id": f"queued-{i}"}).encode()
            sock.sendall(
                b"POST /quick HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            queued.append(sock)
        os.kill(server.pid, signal.SIGTERM)
        wait_for(lambda: "Handling signal: term" in server.output, 30, "the master to take SIGTERM", server)
        (tmp_path / "gate-closed").unlink()
        answers = []
        for sock in queued:
            with sock:
                answers.append(_answer(sock))
        holder.join(60)
        assert server.process.wait(60) == 0, server.output
    assert [response.status_code for response in held] == [200]
    assert [status for status, _ in answers] == [200] * QUEUED
    assert [body["id"] for _, body in answers] == [f"queued-{i}" for i in range(QUEUED)]
