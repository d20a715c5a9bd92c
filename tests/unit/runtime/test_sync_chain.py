"""Which sync runs a sync run's writes started (gears/sync_chain.py), without a runtime."""

from __future__ import annotations

from concurrent.futures import Future

from gearcam.runtime.gears.sync_chain import SyncChains, SyncRun


def started(chains: SyncChains, key: bytes) -> SyncRun:
    run = chains.start(key)
    run.future = Future()
    return run


def test_children_are_later_runs_on_the_written_keys_and_one_deeper() -> None:
    chains = SyncChains()
    parent = started(chains, b"a")
    other = started(chains, b"x")  # a client's write on a key the parent did not write
    child = started(chains, b"b")
    assert child.earlier == [parent, other]  # their listings were open when its event came
    assert chains.take_children(parent, frozenset({b"b"})) == [child.future]
    assert (child.depth, other.depth) == (1, None)
    chains.close(parent)
    assert parent.listed.done()
    grandchild = started(chains, b"c")
    assert grandchild.earlier == [other, child]
    assert chains.take_children(child, None) == [grandchild.future]  # None: it wrote too many keys to list
    assert grandchild.depth == 2
    assert chains.take_children(other, frozenset({b"b", b"c"})) == []  # taken already


def test_an_ended_run_is_nobodys_child() -> None:
    chains = SyncChains()
    parent = started(chains, b"a")
    child = started(chains, b"b")
    chains.end(child)
    assert child.listed.done()
    assert chains.take_children(parent, frozenset({b"b"})) == []
    assert started(chains, b"c").earlier == [parent]
