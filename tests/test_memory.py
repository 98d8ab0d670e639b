"""infraprof.memory: mmap is off only while the outermost heap_allocations block runs, and
restored to glibc's default after it (also when the block raises)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from infraprof import memory


def _recording(calls: list[tuple[str, tuple[int, ...]]]) -> Callable[[str], object]:
    def function(name: str) -> Callable[..., int]:
        def call(*args: int) -> int:
            calls.append((name, args))
            return 1
        return call
    return function


def test_mmap_off_in_the_outermost_block_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(memory, "_libc_function", _recording(calls))
    with memory.heap_allocations():
        assert calls == [("mallopt", (-4, 0))]
        with memory.heap_allocations():
            pass
        assert calls == [("mallopt", (-4, 0))]  # the inner block leaves it off
    assert calls == [("mallopt", (-4, 0)), ("mallopt", (-4, 65536)), ("malloc_trim", (0,))]


def test_mmap_restored_when_the_block_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(memory, "_libc_function", _recording(calls))
    with pytest.raises(RuntimeError), memory.heap_allocations():
        raise RuntimeError("boom")
    assert calls[-2:] == [("mallopt", (-4, 65536)), ("malloc_trim", (0,))]
    assert memory._heap_users == 0


def test_without_mallopt_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_libc_function", lambda name: None)
    with memory.heap_allocations():
        memory.release_free_memory()
    assert memory._heap_users == 0


def test_large_arrays_inside_the_real_allocator() -> None:
    """On this platform's C library: 64 MB blocks allocated, freed and reused in the block."""
    with memory.heap_allocations():
        for _ in range(3):
            block = np.ones(8 << 20, dtype=np.int64)
            assert int(block.sum()) == 8 << 20
            del block
        memory.release_free_memory()
    assert memory._heap_users == 0


def test_between_steps_trims_only_without_heap_allocations(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(memory, "_libc_function", _recording(calls))
    memory.between_steps()
    assert calls == [("malloc_trim", (0,))]
    with memory.heap_allocations():
        memory.between_steps()
        assert calls[1:] == [("mallopt", (-4, 0))]  # no trim inside the block
    assert calls[-1] == ("malloc_trim", (0,))  # the block's end trims once
