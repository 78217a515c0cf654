"""The Batcher on gevent greenlets, in a subprocess that monkey-patches like gunicorn's gevent worker does.

Patching the pytest process itself would leak into every other test, hence the subprocess. Each scenario
prints one JSON line that the test checks; every wait inside is bounded by a ``gevent.Timeout``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("gevent")

PRELUDE = """
from gevent import monkey
monkey.patch_all()

import json
import gevent
from mest.batching import Batcher

batches = []
hooks = []

def infer(items):
    batches.append(list(items))
    while hooks:
        hooks.pop(0)()
    return [("answer", x) for x in items]

def report(**values):
    print(json.dumps(values))
"""


def run_scenario(body: str) -> dict:  # type: ignore[type-arg]
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_greenlets_that_arrive_while_the_leader_yields_share_its_batch() -> None:
    result = run_scenario("""
        batcher = Batcher(infer, max_batch_size=8, max_batch_delay_s=60.0)
        greenlets = [gevent.spawn(batcher.submit, f"g{i}") for i in range(20)]
        with gevent.Timeout(20):
            gevent.joinall(greenlets, raise_error=True)
        report(
            own=[g.value == ("answer", f"g{i}") for i, g in enumerate(greenlets)],
            sizes=[len(b) for b in batches],
        )
    """)
    assert all(result["own"])
    # The first greenlet leads; its one trip through the event loop lets the other 19 queue behind it.
    assert result["sizes"] == [8, 8, 4]


def test_a_leader_waiting_for_stragglers_lets_the_event_loop_run() -> None:
    result = run_scenario("""
        batcher = Batcher(infer, max_batch_size=8, max_batch_delay_s=60.0)
        coming = batcher.arrival()              # a request still in pre_process
        leader = gevent.spawn(batcher.submit, "leader")
        ticks = 0

        def straggler():
            global ticks
            for _ in range(20):                 # runs only if the leader's wait yields to the loop
                gevent.sleep(0.001)
                ticks += 1
            return coming.submit("straggler")

        late = gevent.spawn(straggler)
        with gevent.Timeout(20):
            gevent.joinall([leader, late], raise_error=True)
        report(ticks=ticks, leader=leader.value, late=late.value, batches=batches)
    """)
    assert result["ticks"] == 20
    assert result["leader"] == ["answer", "leader"] and result["late"] == ["answer", "straggler"]
    assert result["batches"] == [["leader", "straggler"]]


def test_a_follower_killed_just_after_being_handed_leadership_passes_it_on() -> None:
    result = run_scenario("""
        import gevent.event

        batcher = Batcher(infer, max_batch_size=2)
        gate = gevent.event.Event()

        def held(x):
            return batcher.submit(x)

        hooks.append(lambda: gate.wait(20))
        leader = gevent.spawn(held, "leader")
        gevent.sleep(0.01)
        victim = gevent.spawn(held, "victim")
        heir = gevent.spawn(held, "heir")
        gevent.sleep(0.01)
        # While the leader is still in infer, schedule the victim's death; the leader then hands it the lead.
        hooks.append(lambda: victim.kill(block=False))
        gate.set()
        with gevent.Timeout(20):
            gevent.joinall([leader, victim, heir])
            after = batcher.submit("after")
        report(leader=leader.value, heir=heir.value, after=after, victim_dead=victim.dead, batches=batches)
    """)
    assert result["victim_dead"]
    assert result["leader"] == ["answer", "leader"]
    assert result["heir"] == ["answer", "heir"]
    assert result["after"] == ["answer", "after"]
    assert ["victim"] not in result["batches"]


def test_without_batching_greenlets_that_never_block_are_served_in_turn() -> None:
    # Like keep-alive clients that answer faster than the model: each greenlet submits again right after its
    # answer, without any I/O that would yield. FIFO only helps if the others get to enter the queue.
    result = run_scenario("""
        order = []

        def single(x):
            order.append(x)
            return ("answer", x)

        batcher = Batcher(single, max_batch_size=1)

        def client(c):
            return [batcher.submit(f"g{c}-{i}") for i in range(3)]

        greenlets = [gevent.spawn(client, c) for c in range(3)]
        with gevent.Timeout(20):
            gevent.joinall(greenlets, raise_error=True)
        report(order=order, own=[g.value == [("answer", f"g{c}-{i}") for i in range(3)]
                                 for c, g in enumerate(greenlets)])
    """)
    assert all(result["own"])
    assert result["order"] == [f"g{c}-{i}" for i in range(3) for c in range(3)]  # round robin, not g0 x3 first
