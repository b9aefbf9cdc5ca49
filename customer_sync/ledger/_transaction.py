"""The group's write transaction, as the writes of ``ledger/outcomes.py`` see it."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from customer_sync.ledger.outcomes import Mark, Outcome
from customer_sync.ledger.records import to_json


class StoreTransaction:
    """The group's transaction as its writes (``Mark``, ``Outcome``) see it: the connection
    and one time. A backend overrides only ``executemany`` and ``dead_letter_rows``."""

    __slots__ = ("_dead_letters", "db", "now", "sql")

    def __init__(self, db: Any, now: str, sql: ModuleType) -> None:
        self.db = db
        self.now = now
        self.sql = sql
        self._dead_letters: bool | None = None

    def executemany(self, statement: str, rows: list[tuple[object, ...]]) -> None:
        self.db.executemany(statement, rows)

    def dead_letter_rows(self, dead: Sequence[tuple[object, ...]]) -> list[tuple[object, ...]]:
        """The DEAD_LETTER parameters of each dead letter: its row, then the time."""
        return [(*row, self.now) for row in dead]

    def may_hold_dead_letters(self) -> bool:
        """Whether there are dead letters to clear (asked once per transaction, not per
        batch: a night without failures never runs the DELETE)."""
        if self._dead_letters is None:
            row = self.db.execute(self.sql.ANY_DEAD_LETTER).fetchone()
            self._dead_letters = bool(row and row[0])
        return self._dead_letters

    def mark(self, write: Mark) -> None:
        """MARK_SENDING: the mark's row, then the time."""
        self.db.execute(self.sql.MARK_SENDING, (*write.row, self.now))

    def outcome(self, write: Outcome) -> None:
        db, now, sql = self.db, self.now, self.sql
        if db.execute(sql.FINISH_BATCH, (*write.batch, now, *write.key)).rowcount == 0:
            # never marked (record_outcome alone): the whole row, its ids included
            ids = to_json(list(write.customer_ids))
            row = (*write.key, write.method, ids, len(write.customer_ids), *write.batch, now, now)
            db.execute(sql.RECORD_BATCH, row)
        if write.acknowledged is not None:
            db.execute(sql.ACKNOWLEDGE, (*write.key, write.acknowledged))
            db.execute(sql.RECORD_ACKNOWLEDGEMENTS, (*write.key, write.acknowledged))
            if self.may_hold_dead_letters():
                db.execute(sql.CLEAR_DEAD_LETTERS, (write.acknowledged,))
        if write.dead:
            self.executemany(sql.DEAD_LETTER, self.dead_letter_rows(write.dead))
            self._dead_letters = True
