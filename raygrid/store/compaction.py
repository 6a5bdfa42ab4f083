"""Journal compaction: many small part files become a few large ones.

Workers write one part per batch of fits, so a search of 10^5 tiny fits leaves hundreds of
parts, and on object storage each is a request when resuming. When a search ends, and
when one resumes, the small parts are merged: their rows (the newest row of each key) are
written as new parts of at most :data:`ROWS_PER_PART` rows, and only then are the merged
parts deleted. A process killed at any point loses nothing and, read back, duplicates
nothing: until the new parts are whole they do not exist (see
:class:`~raygrid.store.location.Location`), and while old and new parts both exist their
rows are the same records under the same keys, which reading keeps once. The next
compaction merges what a killed one left.
"""

from __future__ import annotations

import os
import time
from typing import Any

from raygrid.store.location import Location

# A part with fewer rows than this is merged with the others.
SMALL_PART_ROWS = 50_000
# The most rows a merged part holds.
ROWS_PER_PART = 100_000

# Test hook: the compaction step (``"writing"``, ``"written"``, ``"deleting"``) at which
# the process pauses (see :func:`_pause`), so that a test can kill it there.
PAUSE_ENV = "RAYGRID_TEST_COMPACTION_PAUSE"


def compact(location: Location, parts: list[str], schema: Any) -> int:
    """Merge the small ones of ``parts`` (names under ``location``, oldest first).

    Parameters
    ----------
    location : Location
        The journal's directory.
    parts : list of str
        Parts whose every row is sound (a part with rows raygrid did not write is left
        as it is, for the user to look at).
    schema : pyarrow.Schema
        The journal's columns.

    Returns
    -------
    int
        How many parts were merged away (0 when there was nothing to merge).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raygrid.store.journal import part_stamp, write_part

    small = small_parts(location, parts)
    if len(small) < 2:
        return 0
    tables = []
    for name in small:
        table = pq.read_table(location.open_input(name))
        for field in schema:  # a column added since the part was written (e.g. device)
            if field.name not in table.column_names:
                table = table.append_column(field.name, pa.nulls(len(table), field.type))
        tables.append(table.select(schema.names).cast(schema))
    merged = pa.concat_tables(tables)
    # The newest row of each key: the last one, parts being read oldest first.
    keys = merged.column("key").to_pylist()
    last = {key: i for i, key in enumerate(keys)}
    order = pa.array(sorted(last.values()), pa.int64())
    merged = merged.take(order)
    newest = max(part_stamp(n) for n in small)
    for start in range(0, max(1, merged.num_rows), ROWS_PER_PART):
        write_part(location, merged.slice(start, ROWS_PER_PART), after=newest)
        _pause("writing")
    _pause("written")
    for i, name in enumerate(small):
        location.delete(name)
        if i == len(small) // 2:
            _pause("deleting")
    return len(small)


def small_parts(location: Location, parts: list[str]) -> list[str]:
    """Those of ``parts`` with fewer than :data:`SMALL_PART_ROWS` rows (read from their
    Parquet footers only)."""
    import pyarrow.parquet as pq

    small = []
    for name in parts:
        try:
            rows = pq.read_metadata(location.open_input(name)).num_rows
        except Exception:  # unreadable: reading the journal names it; never merged
            continue
        if rows < SMALL_PART_ROWS:
            small.append(name)
    return small


def _pause(step: str) -> None:
    """Sleep for good at ``step`` when the test hook asks (after saying so in a file)."""
    wanted = os.environ.get(PAUSE_ENV, "")
    if not wanted or wanted.split(":", 1)[0] != step:
        return
    marker = wanted.split(":", 1)[1] if ":" in wanted else ""
    if marker:
        with open(marker, "w") as f:
            f.write(step)
    time.sleep(3600)
