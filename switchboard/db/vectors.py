"""The knowledge base's pgvector column, sized by `SWITCHBOARD_EMBEDDING_DIM`.

On PostgreSQL with the `vector` extension available, knowledge chunks' embeddings live in a
native `vector(dim)` column with an HNSW index (cosine), and search is one indexed query. The
column is `knowledge_base.embedding` when an adopted table already has it as a vector (the seed's
`vector(1536)`, say), else Switchboard's own `knowledge_base.embedding_vec`. Elsewhere (SQLite,
Postgres without pgvector) `knowledge_base.embedding` holds the floats as JSON and similarity
is computed in Python (`agents/memory.py`).

The column follows the setting: `switchboard migrate` (after the Alembic revisions, every time,
so a changed setting takes effect) makes Switchboard's column `vector(dim)` — re-creating it
empty when the dimension changed: vectors of another size cannot be compared, and the chunks
are embedded again as their records are re-indexed — and builds the index. An adopted column of
another dimension is never altered: that is an `Incompatible` error naming it and the setting.
HNSW indexes up to 2,000 dimensions; a larger column is searched exactly, without an index.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlalchemy as sa

from switchboard.db import adopt

log = logging.getLogger("switchboard.migrate")

OWN = "embedding_vec"
ADOPTED = "embedding"
INDEX = "ix_knowledge_base_embedding_hnsw"
HNSW_MAX_DIM = 2000  # pgvector's limit for indexing `vector`
_DIM = re.compile(r"^vector\((\d+)\)$")


@dataclass(frozen=True)
class VectorColumn:
    name: str
    dim: int


def available(connection: sa.Connection) -> bool:
    """Can this database hold vectors (PostgreSQL with the extension installable)?"""
    if connection.dialect.name != "postgresql":
        return False
    query = "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
    return connection.execute(sa.text(query)).first() is not None


def find(connection: sa.Connection) -> VectorColumn | None:
    """The knowledge base's vector column, if it has one."""
    if connection.dialect.name != "postgresql":
        return None
    kinds = adopt.column_types(connection, "knowledge_base")
    for name in (ADOPTED, OWN):  # the owner's vector column wins: it is where their vectors are
        match = _DIM.match(kinds.get(name, ""))
        if match:
            return VectorColumn(name, int(match.group(1)))
    return None


def plan(connection: sa.Connection, dim: int) -> list[str]:
    """What `ensure` would do (nothing changed)."""
    if not available(connection):
        return []
    found = find(connection)
    if found and found.name == ADOPTED:
        if found.dim != dim and adopt.adopted(connection, "knowledge_base"):  # else adopting it says so
            return [f"cannot: {adopt.vector_mismatch(found.name, found.dim, dim)}"]
        if found.dim != dim:
            return []
        return [f"use the existing knowledge_base.{ADOPTED} vector({dim}) for knowledge search"]
    if found and found.dim == dim:
        return []
    emptied = " (empty: the old vectors are another size)" if found else ""
    return [f"make knowledge_base.{OWN} vector({dim}){emptied}"]


def ensure(connection: sa.Connection, dim: int) -> str | None:
    """Make the vector column and its index match `dim`; what it did, or None."""
    if not available(connection):
        return None
    connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    found = find(connection)
    did = None
    if found and found.name == ADOPTED:
        if found.dim != dim:
            raise adopt.Incompatible(adopt.vector_mismatch(found.name, found.dim, dim))
        if OWN in adopt.column_types(connection, "knowledge_base"):  # the owner's column holds the vectors
            connection.execute(sa.text(f"ALTER TABLE knowledge_base DROP COLUMN {OWN}"))
    elif found is None or found.dim != dim:
        connection.execute(sa.text(f"ALTER TABLE knowledge_base DROP COLUMN IF EXISTS {OWN}"))
        connection.execute(sa.text(f"ALTER TABLE knowledge_base ADD COLUMN {OWN} vector({dim})"))
        did = f"knowledge_base.{OWN} is vector({dim})" + (f" (was vector({found.dim}))" if found else "")
        found = VectorColumn(OWN, dim)
    if _index_on(connection, found.name) or dim > HNSW_MAX_DIM:
        if dim > HNSW_MAX_DIM:
            log.warning("knowledge_base.%s has %d dimensions: pgvector indexes at most %d, search scans exactly",
                        found.name, dim, HNSW_MAX_DIM)  # fmt: skip
        return did
    connection.execute(sa.text(f"CREATE INDEX {INDEX} ON knowledge_base USING hnsw ({found.name} vector_cosine_ops)"))
    if found.name == ADOPTED:
        adopt.record_index(connection, "knowledge_base", INDEX)
    return did or f"indexed knowledge_base.{found.name} (hnsw, cosine)"


def _index_on(connection: sa.Connection, column: str) -> bool:
    """Is there an HNSW cosine index on `column` (ours, or one the owner made)?"""
    rows = connection.execute(
        sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'knowledge_base' AND indexdef ILIKE '%USING hnsw%'")
    ).all()
    return any(f"({column} vector_cosine_ops)" in row.indexdef for row in rows)
