"""Mest on Ray Serve, with a real two-node Ray cluster started by the test.

The head node runs on this host; the second node runs in a network namespace the test creates (a veth pair,
10.231.X.1 on the host side, .2 inside), so it is its own host as far as Ray can tell; where namespaces
cannot be made (not root, no ``ip``), both nodes run on 127.0.0.1. Each node offers one logical CPU, so two
replicas land one on each node. The app is deployed with ``mest ray serve --address ...`` (the command a
user runs), its HTTP proxy on the head only, and every request goes through that proxy. Everything started
is stopped by PID (the ``ray start --block`` processes and every descendant), the namespace deleted.

Ray is heavy for a small shared machine: one cluster for the module, few deployments, generous deadlines,
bounded load, no timing assertions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.servers import APPS_DIR

# Ray is never imported into the test process (importing it changes the logging module's record factory for
# every later test): it runs in the processes the tests start.
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None or importlib.util.find_spec("a2wsgi") is None,
                       reason="Ray Serve is not installed (pip install 'mest[ray]')"),
]

RAY = str(Path(sys.executable).parent / "ray")
START_TIMEOUT_S = 300.0
DEPLOY_TIMEOUT_S = 300.0
RECOVERY_TIMEOUT_S = 180.0


# -- processes --------------------------------------------------------------------------------------------


@dataclass
class Process:
    """A started command, its output collected by a thread."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def output(self) -> str:
        return "".join(self.lines)


def launch(argv: list[str], *, cwd: Path = APPS_DIR, env: dict[str, str] | None = None) -> Process:
    popen = subprocess.Popen(argv, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    process = Process(popen)

    def pump() -> None:
        assert popen.stdout is not None
        with popen.stdout:  # closed by its only reader once every process holding the pipe has exited
            for line in popen.stdout:
                process.lines.append(line)

    process.reader = threading.Thread(target=pump, daemon=True)
    process.reader.start()
    return process


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc (Ray's daemons, its workers, the replicas)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if fields[0] != "Z":
                    parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def terminate(process: Process, timeout: float = 60.0) -> None:
    """SIGTERM the process and all its descendants by PID; SIGKILL whatever is left after ``timeout``."""
    pids = {process.popen.pid} | descendants(process.popen.pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process.popen.poll() is None or any(alive(p) for p in pids)):
        time.sleep(0.2)
    for pid in pids | descendants(process.popen.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.popen.pid, signal.SIGKILL)
    process.popen.wait(30)
    if process.reader is not None:
        process.reader.join(30)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, *processes: Process) -> None:
    """Poll ``condition`` until true; fail after ``timeout``, or as soon as one of ``processes`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if condition():
                return
        exited = [p for p in processes if p.popen.poll() is not None]
        if exited or time.monotonic() > deadline:
            what += f" ({len(exited)} process(es) exited)" if exited else ""
            outputs = "\n".join(p.output[-6000:] for p in processes)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{outputs}")
        time.sleep(0.5)


# -- the cluster --------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    head_ip: str
    address: str
    proxy_port: int
    netns: str | None
    processes: list[Process]
    #: Ray's token authentication (on by default): every node and driver needs the cluster's token.
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://{self.head_ip}:{self.proxy_port}"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def _namespace() -> Iterator[tuple[str, str, str] | None]:
    """A network namespace joined to the host by a veth pair: (name, host IP, namespace IP), or None."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        yield None
        return
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    octet = next(n for n in random.sample(range(10, 250), 240) if f"10.231.{n}." not in used)
    tag = f"{os.getpid() % 100000}"
    name, host_if, ns_if = f"mest-ray-{tag}", f"mrh{tag}", f"mrn{tag}"
    host_ip, ns_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError:
        yield None
        return
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", name)
        _ip("addr", "add", f"{host_ip}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for args in (("addr", "add", f"{ns_ip}/24", "dev", ns_if), ("link", "set", ns_if, "up"),
                     ("link", "set", "lo", "up")):
            _ip("netns", "exec", name, "ip", *args)
        yield name, host_ip, ns_ip
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False, timeout=30)


def _node_argv(temp_dir: str, ip: str, *args: str) -> list[str]:
    return [RAY, "start", "--block", "--num-cpus", "1", "--object-store-memory", str(200 * 1024 * 1024),
            "--node-ip-address", ip, "--temp-dir", temp_dir, "--disable-usage-stats", *args]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with contextlib.ExitStack() as stack:
        namespace = stack.enter_context(_namespace())
        head_ip, worker_ip = (namespace[1], namespace[2]) if namespace else ("127.0.0.1", "127.0.0.1")
        head_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mray", dir="/tmp"))
        worker_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mray", dir="/tmp"))
        gcs_port = _free_port(head_ip)
        address = f"{head_ip}:{gcs_port}"
        processes: list[Process] = []
        stack.callback(lambda: [terminate(p) for p in reversed(processes)])
        # Ray's proxy sends a request to a replica on its own node when one has room; the test wants to see
        # both replicas answer through the one proxy, so it spreads requests over every node's replicas.
        env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
               "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"}
        head = launch(_node_argv(head_dir, head_ip, "--head", "--port", str(gcs_port), "--include-dashboard",
                                 "false"), env=env)
        processes.append(head)
        wait_until(lambda: "Ray runtime started" in head.output, START_TIMEOUT_S, "the head node", head)
        prefix = ["ip", "netns", "exec", namespace[0]] if namespace else []
        worker = launch([*prefix, *_node_argv(worker_dir, worker_ip, "--address", address)], env=env)
        processes.append(worker)
        wait_until(lambda: "Ray runtime started" in worker.output, START_TIMEOUT_S, "the second node", worker)
        yield Cluster(head_ip, address, _free_port(head_ip), namespace[0] if namespace else None, processes, env)


@contextlib.contextmanager
def deployed(cluster: Cluster, *args: str) -> Iterator[Process]:
    """``mest ray serve ray_app:app ARGS`` on the cluster; yields once the banner is printed and it is ready."""
    driver = launch([sys.executable, "-m", "mest", "ray", "serve", "ray_app:app", "--address", cluster.address,
                     "--host", cluster.head_ip, "--port", str(cluster.proxy_port), "--proxy-location", "HeadOnly",
                     *args], env=cluster.env)
    try:
        wait_until(lambda: " * Mest serving ray_app:app" in driver.output, DEPLOY_TIMEOUT_S, "the deployment",
                   driver, *cluster.processes)
        wait_until(lambda: httpx.get(cluster.url + "/health/ready", timeout=10).status_code == 200,
                   DEPLOY_TIMEOUT_S, "readiness through the proxy", driver)
        yield driver
    finally:
        terminate(driver, timeout=90)


def where(client: httpx.Client, route: str = "/where", ident: str = "x") -> dict[str, Any]:
    response = client.post(route, json={"id": ident}, timeout=60)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["id"] == ident
    return answer


# -- tests ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_replicas(cluster: Cluster) -> Iterator[Process]:
    with deployed(cluster, "--replicas", "2") as driver:
        yield driver


def test_two_replicas_on_two_nodes_answer_through_one_proxy(cluster: Cluster, two_replicas: Process) -> None:
    seen: dict[int, str] = {}
    with httpx.Client(base_url=cluster.url) as client:
        def both() -> bool:
            answer = where(client, ident=f"r{len(seen)}")
            seen[answer["pid"]] = answer["netns"]
            return len(seen) >= 2
        wait_until(both, RECOVERY_TIMEOUT_S, "answers from two replicas", two_replicas)
        if cluster.netns is not None:
            assert len(set(seen.values())) == 2, f"both replicas in one network namespace: {seen}"
        # Everything the app serves answers through Ray's proxy: health, metrics, OpenAPI, docs, V2, errors.
        assert client.get("/health/live").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "# TYPE" in metrics.text
        assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
        docs = client.get("/docs")
        assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
        assert client.get("/v2/models/where").json()["name"] == "where"
        bad = client.post("/where", content=b"{oops", headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["request_id"]
        assert client.get("/no/such/route").status_code == 404


def test_batches_larger_than_five_under_32_clients(cluster: Cluster, two_replicas: Process) -> None:
    """Ray admits max_ongoing_requests (set by Mest) per replica, not its default 5, so batches reach 8."""
    admitted = re.search(r"max_ongoing_requests (\d+)", two_replicas.output)
    assert admitted is not None and int(admitted.group(1)) >= 2 * 8
    largest = 0
    with httpx.Client(base_url=cluster.url, limits=httpx.Limits(max_connections=32)) as client, \
            ThreadPoolExecutor(32) as pool:
        for round_ in range(3):
            answers = list(pool.map(lambda i, r=round_: where(client, "/batched", f"{r}-{i}"), range(32)))
            assert sorted(a["id"] for a in answers) == sorted(f"{round_}-{i}" for i in range(32))
            largest = max(largest, *(a["batch"] for a in answers))
            if largest > 5:
                break
    assert largest > 5


def test_killed_replica_is_replaced_while_serving(cluster: Cluster, two_replicas: Process) -> None:
    with httpx.Client(base_url=cluster.url) as client:
        pids: set[int] = set()
        wait_until(lambda: pids.add(where(client)["pid"]) or len(pids) >= 2, RECOVERY_TIMEOUT_S, "two replicas",
                   two_replicas)
        victim = min(pids)
        outcomes: Counter[str] = Counter()
        after: set[int] = set()
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=cluster.url) as own:
                while not stop.is_set():
                    try:
                        response = own.post("/where", json={"id": "k"}, timeout=30)
                    except httpx.TransportError as exc:
                        outcomes[type(exc).__name__] += 1
                        continue
                    outcomes[str(response.status_code)] += 1
                    if response.status_code == 200:
                        after.add(response.json()["pid"])

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: len(after - {victim} - pids) >= 1, RECOVERY_TIMEOUT_S, "a replacement replica",
                       two_replicas)
        finally:
            stop.set()
            for worker in workers:
                worker.join(60)
        lost = sum(n for outcome, n in outcomes.items() if outcome != "200")
        print(f"\nSIGKILLed replica {victim}: {outcomes['200']} answered, {lost} lost ({dict(outcomes)})")
        assert outcomes["200"] > 0
        assert not alive(victim)
        # Once replaced, every request is answered again.
        for i in range(10):
            where(client, ident=f"after-{i}")


def test_autoscaling_from_one_to_two_replicas(cluster: Cluster, two_replicas: Process) -> None:
    # The fixed two-replica deployment is gone first: the CPUs are needed for the autoscaled one.
    terminate(two_replicas, timeout=90)
    options = ("--autoscale", "1:2", "--autoscaling-option", "target_ongoing_requests=1",
               "--autoscaling-option", "upscale_delay_s=1", "--autoscaling-option", "look_back_period_s=2",
               "--name", "autoscaled")
    with deployed(cluster, *options) as driver, httpx.Client(base_url=cluster.url) as client:
        first = where(client)["pid"]
        seen: set[int] = {first}
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=cluster.url) as own:
                while not stop.is_set():
                    with contextlib.suppress(httpx.TransportError):
                        response = own.post("/slow", json={}, timeout=60)
                        if response.status_code == 200:
                            seen.add(response.json()["pid"])

        workers = [threading.Thread(target=load) for _ in range(6)]
        for worker in workers:
            worker.start()
        try:
            wait_until(lambda: len(seen) >= 2, RECOVERY_TIMEOUT_S, "a second replica under load", driver)
        finally:
            stop.set()
            for worker in workers:
                worker.join(60)
        assert len(seen) == 2
