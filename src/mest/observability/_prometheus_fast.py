"""Metric updates in one Python call, by writing prometheus_client's values the way its own methods do.

The request path calls these instead of a child's public ``observe``/``inc``/``set``: the same values change in
the same way, without the per-call checks (observability, exemplars) and the bucket loop, which together cost
more than the update itself (docs/benchmarks.md). They touch prometheus_client's internals (a histogram's
``_upper_bounds``, ``_buckets`` and ``_sum``, a value's ``_value``, and in multiprocess mode its file's
``_m`` and ``_positions``), which is why they live here, alone, and why ``tests/test_metrics_fast_paths.py``
checks, for the installed prometheus_client, that each fast path is taken and gives exactly the samples the
public methods give. Each falls back to the public method when the internals are not the expected ones.
"""

from __future__ import annotations

import struct
import threading
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

__all__ = ["adder_of", "observer_of", "setter_of"]


#: A value, and where its total lives in this process's file: ``(value, mmap or None, position)``.
_Slot = tuple[Any, Any, int]


def observer_of(child: Any) -> Callable[[float], None]:
    """``child.observe`` of a histogram child: a bisect and two value updates, in one call."""
    try:
        bounds = list(child._upper_bounds)
        buckets = list(child._buckets)
        total = child._sum
    except AttributeError:
        observe: Callable[[float], None] = child.observe
        return observe
    if len(bounds) != len(buckets) or bounds[-1] != float("inf"):
        observe = child.observe
        return observe
    slots = [_slot(value) for value in (total, *buckets)]
    if all(slot is not None for slot in slots):
        return _direct_observer(bounds, slots)  # type: ignore[arg-type]
    add_to_sum = _value_adder(total)
    bucket_adders = [_value_adder(bucket) for bucket in buckets]

    def fast_observe(amount: float) -> None:
        add_to_sum(amount)
        bucket_adders[bisect_left(bounds, amount)](1)  # the first bucket whose bound is >= amount

    return fast_observe


def _direct_observer(bounds: list[float], slots: list[_Slot]) -> Callable[[float], None]:
    """A histogram's observe in one call: the sum's and one bucket's new totals (written into their file slots
    in multiprocess mode)."""
    total, mapping, position = slots[0]
    buckets = slots[1:]
    lock = _write_lock

    def observe(amount: float) -> None:
        bucket, bucket_mapping, bucket_position = buckets[bisect_left(bounds, amount)]
        with lock:
            new_total = total._value + amount
            total._value = new_total
            if mapping is not None:
                _pack_double(mapping, position, new_total)
            count = bucket._value + 1.0
            bucket._value = count
            if bucket_mapping is not None:
                _pack_double(bucket_mapping, bucket_position, count)

    return observe


def setter_of(child: Any) -> Callable[[float], None]:
    """``child.set`` of a gauge child: the new value written straight into its slot (see ``_mmap_adder``)."""
    value = getattr(child, "_value", None)
    slot = _slot(value) if value is not None else None
    if slot is None:
        setter: Callable[[float], None] = child.set
        return setter
    target, mapping, position = slot
    lock = _write_lock

    def set_value(amount: float) -> None:
        with lock:
            target._value = amount
            if mapping is not None:
                _pack_double(mapping, position, amount)

    return set_value


def adder_of(child: Any) -> Callable[[float], None]:
    """``child.inc`` of a counter or gauge child (a negative amount decrements a gauge)."""
    value = getattr(child, "_value", None)
    if value is None or not hasattr(value, "inc"):
        inc: Callable[[float], None] = child.inc
        return inc
    return _value_adder(value)


def _value_adder(value: Any) -> Callable[[float], None]:
    """``value.inc`` of one of prometheus_client's value objects (a child's, or a histogram's sum or bucket)."""
    if getattr(value, "_multiprocess", False):
        return _mmap_adder(value)
    inc: Callable[[float], None] = value.inc
    return inc


_pack_double = struct.Struct("d").pack_into
_write_lock = threading.Lock()


def _slot(value: Any) -> _Slot | None:
    """Where a value's total lives: ``(value, None, 0)`` in one process (prometheus_client's ``MutexValue``),
    its file slot in multiprocess mode; ``None`` if prometheus_client's internals are not the expected ones."""
    if getattr(value, "_multiprocess", False):
        return _mmap_slot(value)
    if isinstance(getattr(value, "_value", None), float) and hasattr(value, "_lock"):
        return value, None, 0
    return None


def _mmap_slot(value: Any) -> _Slot | None:
    """``(value, mapping, position)``: where a multiprocess value's total lives in this process's file.

    Found once per process: metrics are bound after a fork, and ``value.get()`` first makes prometheus_client
    reopen this process's files. A file that grows gets a new mapping while the old one stays valid for the
    slots it covers. ``None`` if prometheus_client's internals are not the ones this was written against.
    """
    try:
        value.get()
        file, key = value._file, value._key
        file.write_value(key, value._value, 0.0)  # allocates the slot if new; timestamp 0 as inc() writes
        return value, file._m, file._positions[key]
    except AttributeError:
        return None


def _mmap_adder(value: Any) -> Callable[[float], None]:
    """``value.inc`` of a multiprocess (mmap-backed) value: the same bytes written to the same file.

    prometheus_client's own ``inc`` costs five Python calls per update (the lock, a pid check that exists to
    notice forks, the file's key look-up, the packing), and a request makes a dozen updates. This writes the
    new total into the value's slot directly. One lock (``_write_lock``, shared by every value Mest updates this
    way, and only by Mest's own series) serializes the updates so threads never lose one.
    """
    slot = _mmap_slot(value)
    if slot is None:
        inc: Callable[[float], None] = value.inc
        return inc
    _, mapping, position = slot
    lock = _write_lock

    def add(amount: float) -> None:
        with lock:
            total = value._value + amount
            value._value = total
            _pack_double(mapping, position, total)

    return add

