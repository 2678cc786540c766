"""Every audit record's content hash, recomputed in one pass over the audit graph.

Looking records up one by one costs a round of index reads per record and a Python object per
quad. Here the store writes the audit graph out as N-Triples itself (one triple per line, in the
very form :func:`service.knowledge.canonical.canonical_form` sorts and hashes), and DuckDB groups
each record's lines with those of its parts (the nodes it links by ``wf:hasCandidate``, as
:func:`service.audit.chain.record_triples` gathers them), leaves out ``wf:contentHash`` lines,
sorts them by code point (byte order of UTF-8) and hashes them with SHA-256. The result is what
:func:`service.audit.chain.verify` compares with each record's stored hash.

The export and DuckDB's working files live in a temporary folder (``folder`` or the system's) and
are removed afterwards; DuckDB spills to that folder when the graph outgrows memory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from service.knowledge import vocab
from service.knowledge.store import GraphStore

_LINES = """
CREATE TABLE t AS
SELECT line, split_part(line, ' ', 1) AS s, split_part(line, ' ', 2) AS p
FROM read_csv(?, columns = {'line': 'VARCHAR'}, delim = '\x01', quote = '', escape = '', header = false,
              auto_detect = false, new_line = '\\n')
"""

# A record is a subject with a wf:sequence; its members are itself and the IRIs it links by wf:hasCandidate.
_DIGESTS = """
WITH records AS (SELECT DISTINCT s FROM t WHERE p = $sequence),
members AS (
    SELECT s AS owner, s AS member FROM records
    UNION
    SELECT t.s AS owner, split_part(t.line, ' ', 3) AS member
    FROM t JOIN records USING (s)
    WHERE t.p = $candidate AND starts_with(split_part(t.line, ' ', 3), '<')
),
lines AS (
    SELECT DISTINCT m.owner, t.line
    FROM members m JOIN t ON t.s = m.member
    WHERE t.p <> $hash
)
SELECT owner, sha256(string_agg(line, chr(10) ORDER BY line) || chr(10)) FROM lines GROUP BY owner
"""


def record_digests(store: GraphStore, *, folder: Path | None = None) -> dict[str, str]:
    """Return each chained record's recomputed content hash, keyed by the record's IRI."""
    with tempfile.TemporaryDirectory(prefix="wf-audit-scan-", dir=folder) as scratch:
        export = Path(scratch) / "audit.nt"
        store.export_graph(vocab.AUDIT_GRAPH, export)
        if not export.exists() or export.stat().st_size == 0:
            return {}
        with duckdb.connect(str(Path(scratch) / "scan.duckdb")) as con:
            con.execute("SET temp_directory = ?", [scratch])
            con.execute("SET preserve_insertion_order = false")
            con.execute(_LINES, [str(export)])
            export.unlink()  # its lines are in DuckDB now: no need to hold both on disk
            rows = con.execute(
                _DIGESTS,
                {
                    "sequence": f"<{vocab.SEQUENCE.value}>",
                    "candidate": f"<{vocab.HAS_CANDIDATE.value}>",
                    "hash": f"<{vocab.CONTENT_HASH.value}>",
                },
            ).fetchall()
    return {owner[1:-1]: digest for owner, digest in rows}
