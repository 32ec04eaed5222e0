"""Tables that held a crowd shrink to what they hold (django_realtime._compact)."""

from __future__ import annotations

import gc
import sys
import weakref

from django_realtime._compact import compact, compact_weak


class Item:
    pass


def test_a_dict_that_emptied_shrinks_in_place_and_keeps_its_order() -> None:
    table = {n: str(n) for n in range(20_000)}
    for n in range(20_000):
        if n % 1000:
            del table[n]
    before = sys.getsizeof(table)
    saved = compact(table)
    assert saved > 0
    assert sys.getsizeof(table) == before - saved < before // 10
    assert list(table) == list(range(0, 20_000, 1000))
    assert table[5000] == "5000"


def test_a_set_shrinks_in_place() -> None:
    members = set(range(20_000))
    same = members
    for n in range(10, 20_000):
        members.discard(n)
    assert compact(members) > 0
    assert members is same
    assert members == set(range(10))


def test_a_table_without_much_slack_is_left_alone() -> None:
    table = {n: n for n in range(1000)}
    assert compact(table, {1, 2}) == 0


def test_a_weak_set_keeps_removing_the_dead_after_it_shrank() -> None:
    items = [Item() for _ in range(20_000)]
    members = weakref.WeakSet(items)
    del items[10:]
    gc.collect()
    assert len(members) == 10
    assert compact_weak(members) > 0
    items.pop()
    gc.collect()
    assert len(members) == 9
    assert set(members) == set(items)


def test_a_weak_value_dict_shrinks_and_what_has_no_table_is_skipped() -> None:
    items = [Item() for _ in range(20_000)]
    table = weakref.WeakValueDictionary(enumerate(items))
    del items[5:]
    gc.collect()
    assert compact_weak(table, None, object()) > 0
    assert sorted(table) == [0, 1, 2, 3, 4]
    assert gc.isenabled()
