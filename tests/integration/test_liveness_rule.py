"""``Drop.is_live`` (Python: pages, the console) and ``holds.LIVE_DROP`` (SQL: the hold itself)
are one rule written twice; this pins them together on both databases."""

from __future__ import annotations

import itertools
from datetime import timedelta

from shop import holds
from shop.extensions import db
from shop.models.drop import STATES
from testkit.factories import AT_DROP, make_drop, make_maker

_LIVE = holds.statement(f"SELECT d.id FROM drops d WHERE d.id = :id AND {holds.LIVE_DROP}")  # noqa: S608

# Each window edge before, exactly at and after "now", and no edge at all.
_EDGES = (None, -timedelta(minutes=1), timedelta(0), timedelta(minutes=1))


def test_drop_is_live_says_what_the_hold_statement_decides_for_every_state_and_window(app):
    maker = make_maker()
    drops = []
    for state, opens, closes, suspended in itertools.product(STATES, _EDGES, _EDGES, (False, True)):
        if opens is not None and closes is not None and closes <= opens:
            continue  # the window_ordered CHECK refuses such a drop
        opens_at = AT_DROP + opens if opens is not None else None
        closes_at = AT_DROP + closes if closes is not None else None
        drop = make_drop(maker, state=state, opens_at=opens_at, closes_at=closes_at)
        drop.suspended = suspended  # the operator suspended its maker
        drops.append(drop)
    db.session.commit()

    in_python = {d.id: d.is_live(AT_DROP) for d in drops}
    in_sql = {
        d.id: db.session.execute(_LIVE, {"id": d.id, "now": AT_DROP}).first() is not None
        for d in drops
    }

    assert in_python == in_sql
    assert 0 < sum(in_python.values()) < len(drops)  # both answers occur
