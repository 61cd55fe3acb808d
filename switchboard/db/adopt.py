"""Adopting an existing schema: the seed's tables already in the database (a Supabase project
that ran the old stack) become Switchboard's, in place.

`switchboard migrate` on a database that already holds `knowledge_base`, `agent_conversations`,
`agent_decisions`, `proactive_insights` or `agent_context` keeps each table and every row, and
adds what Switchboard needs: missing columns (nullable where the model has no default, so no row
is rewritten), its indexes and unique constraints — not its check constraints: rows the old stack
wrote, or still writes, are checked as Switchboard reads them, and set aside with the reason
(quarantined) when they do not fit. A column Switchboard cannot use — the wrong type, too short,
or `NOT NULL` without a default on a column Switchboard never writes — is an `Incompatible` error
naming table and column, raised before anything is changed (the migrations run in one
transaction, so nothing is). What existed before is written down in `switchboard_adopted`, so
later migrations leave the owner's columns alone and downgrades never drop a table, column or
row-level-security setting Switchboard did not create.

Only PostgreSQL is adopted: the seed lives in Postgres, and SQLite cannot add constraints in
place. The migrations call in here; nothing else does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from switchboard.db.models import adopted_ledger as ledger
from switchboard.errors import ConfigurationError

SEED_TABLES = ("knowledge_base", "agent_conversations", "agent_decisions", "proactive_insights", "agent_context")
# an owner's column of another type Switchboard uses as it is: a pgvector embedding (db/vectors.py)
ACCEPTED = {("knowledge_base", "embedding", "vector")}
LEDGER = ledger.name


class Incompatible(ConfigurationError):
    """The existing schema has a column Switchboard cannot use; nothing was changed."""


@dataclass
class TablePlan:
    """What adopting one existing table does."""

    table: str
    rows: int
    existing_columns: list[str]
    add_columns: list[str] = field(default_factory=list)
    add_constraints: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = [f"adopt {self.table} ({self.rows} rows kept; columns {', '.join(self.existing_columns)} untouched)"]
        lines += [f"  add column {c}" for c in self.add_columns]
        lines += [f"  add {c}" for c in self.add_constraints]
        lines += [f"  cannot: {p}" for p in self.problems]
        return lines


# --------------------------------------------------------------------------- the ledger


def ensure_ledger(bind: sa.Connection) -> None:
    ledger.create(bind, checkfirst=True)


def _recorded(bind: sa.Connection, table: str, kinds: Iterable[str]) -> set[str | None]:
    if not sa.inspect(bind).has_table(LEDGER):
        return set()
    rows = bind.execute(
        sa.select(ledger.c.name).where(ledger.c.table_name == table, ledger.c.kind.in_(list(kinds)))
    ).all()
    return {row.name for row in rows}


def adopted(bind: sa.Connection, table: str) -> bool:
    """Was `table` there before Switchboard (so Switchboard must never drop it)?"""
    return None in _recorded(bind, table, ["table"])


def pre_existing_columns(bind: sa.Connection, table: str) -> set[str]:
    return {name for name in _recorded(bind, table, ["column"]) if name}


def _record(bind: sa.Connection, table: str, kind: str, name: str | None) -> None:
    bind.execute(sa.insert(ledger).values(table_name=table, kind=kind, name=name))


def record_index(bind: sa.Connection, table: str, name: str) -> None:
    """An index Switchboard built on an adopted table's own column (dropped by the downgrade)."""
    if adopted(bind, table) and name not in _recorded(bind, table, ["index"]):
        _record(bind, table, "index", name)


# --------------------------------------------------------------------------- planning


def _want(column: sa.Column[Any]) -> sa.types.TypeEngine[Any]:
    variants: dict[str, sa.types.TypeEngine[Any]] = getattr(column.type, "_variant_mapping", {})
    return variants.get("postgresql", column.type)


def _type_problem(want: sa.types.TypeEngine[Any], have: sa.types.TypeEngine[Any]) -> str | None:
    """Why a value Switchboard writes as `want` does not fit a column of type `have` (None: fits)."""
    if isinstance(want, sa.String):
        if not isinstance(have, sa.String):
            return "text"
        if have.length is not None and (want.length is None or have.length < want.length):
            return f"text of up to {want.length or 'any'} characters"
        return None
    if isinstance(want, sa.Integer):
        if isinstance(have, sa.Integer) and not isinstance(have, sa.SmallInteger):
            return None
        return "an integer (integer or bigint)"
    if isinstance(want, sa.Float):
        return None if isinstance(have, sa.Numeric) else "a number"
    if isinstance(want, sa.JSON):
        return None if isinstance(have, postgresql.JSONB) else "jsonb"
    if isinstance(want, sa.DateTime):
        return None if isinstance(have, sa.DateTime) else "a timestamp (timestamptz)"
    if isinstance(want, sa.Boolean):
        return None if isinstance(have, sa.Boolean) else "a boolean"
    return None


def column_types(bind: sa.Connection, table: str) -> dict[str, str]:
    """Each column's type as PostgreSQL spells it (`vector(1536)` too, which SQLAlchemy cannot reflect)."""
    rows = bind.execute(
        sa.text(
            "SELECT attname, format_type(atttypid, atttypmod) AS kind FROM pg_attribute "
            "WHERE attrelid = to_regclass(:t) AND attnum > 0 AND NOT attisdropped"
        ),
        {"t": f'"{table}"'},
    ).all()
    return {row.attname: row.kind for row in rows}


def plan_table(bind: sa.Connection, table: sa.Table) -> TablePlan:
    """What adopting the existing `table.name` to the definition `table` takes."""
    inspector = sa.inspect(bind)
    existing = {c["name"]: c for c in inspector.get_columns(table.name)}
    quoted = bind.dialect.identifier_preparer.quote
    rows = int(bind.execute(sa.text(f"SELECT count(*) FROM {quoted(table.name)}")).scalar_one())
    plan = TablePlan(table.name, rows, list(existing))
    kinds = column_types(bind, table.name)
    ddl = sa.schema.CreateColumn
    for column in table.columns:
        found = existing.get(column.name)
        if found is None:
            copy = column._copy()
            if not copy.nullable and copy.server_default is None:
                copy.nullable = True  # the rows already there have no value for it
            plan.add_columns.append(column.name)
            plan.statements.append(
                f"ALTER TABLE {quoted(table.name)} ADD COLUMN {ddl(copy).compile(dialect=bind.dialect)}"
            )
            continue
        problem = _type_problem(_want(column), found["type"])
        if problem and (table.name, column.name, kinds[column.name].split("(")[0]) not in ACCEPTED:
            plan.problems.append(f"{table.name}.{column.name} is {kinds[column.name]}; Switchboard needs {problem}")
    for name, found in existing.items():
        if name in table.columns:
            continue
        if not found["nullable"] and found.get("default") is None and not found.get("identity"):
            plan.problems.append(
                f"{table.name}.{name} is NOT NULL without a default, and Switchboard does not write it: "
                "give it a DEFAULT or allow NULL"
            )
    key = inspector.get_pk_constraint(table.name).get("constrained_columns") or []
    if key != ["id"]:
        plan.problems.append(f"{table.name} has primary key ({', '.join(key) or 'none'}); Switchboard needs (id)")
    elif "id" in existing and existing["id"].get("default") is None and not existing["id"].get("identity"):
        plan.problems.append(f"{table.name}.id has no default: Switchboard needs an identity or serial id")
    names = {c["name"] for c in inspector.get_unique_constraints(table.name)}
    names |= {c["name"] for c in inspector.get_check_constraints(table.name)}
    names |= {i["name"] for i in inspector.get_indexes(table.name)}
    for constraint in table.constraints:
        if isinstance(constraint, sa.PrimaryKeyConstraint) or constraint.name in names:
            continue
        assert isinstance(constraint.name, str)
        if isinstance(constraint, sa.CheckConstraint):
            continue  # see `replace_check`
        if isinstance(constraint, sa.UniqueConstraint):
            cols = ", ".join(quoted(c.name) for c in constraint.columns)
            plan.add_constraints.append(f"unique {constraint.name} ({cols})")
            plan.statements.append(
                f"ALTER TABLE {quoted(table.name)} ADD CONSTRAINT {quoted(constraint.name)} UNIQUE ({cols})"
            )
    return plan


def existing_seed_tables(bind: sa.Connection) -> list[str]:
    """The seed tables present in a database Switchboard has not migrated yet."""
    inspector = sa.inspect(bind)
    return [t for t in SEED_TABLES if inspector.has_table(t)]


# --------------------------------------------------------------------------- the migrations' helpers


def adopt_or_create(op: Any, name: str, *elements: Any) -> None:
    """`op.create_table(name, *elements)`, or — the table is there already — adopt it: check
    every column (Incompatible, before anything changes, via `check_all`), then add what is
    missing and write down what was there."""
    bind = op.get_bind()
    if not sa.inspect(bind).has_table(name):
        op.create_table(name, *elements)
        return
    if bind.dialect.name != "postgresql":
        raise Incompatible(f"{name} exists already: adopting an existing schema needs PostgreSQL")
    plan = plan_table(bind, sa.Table(name, sa.MetaData(), *elements))
    if plan.problems:
        raise Incompatible(f"cannot adopt the existing table {name}: " + "; ".join(plan.problems))
    _record(bind, name, "table", None)
    for column in plan.existing_columns:
        _record(bind, name, "column", column)
    for statement in plan.statements:
        bind.execute(sa.text(statement))
    for constraint in elements:
        if isinstance(constraint, sa.UniqueConstraint) and constraint.name:
            _record(bind, name, "constraint", str(constraint.name))


def vector_mismatch(column: str, have: int, want: int) -> str:
    return (
        f"knowledge_base.{column} is vector({have}) but SWITCHBOARD_EMBEDDING_DIM is {want}: "
        f"set SWITCHBOARD_EMBEDDING_DIM={have} (and an embedder of that size)"
    )


def plan(bind: sa.Connection, metadata: sa.MetaData, embedding_dim: int) -> list[TablePlan]:
    """Adopting each seed table the database already has, to the models' shape (`metadata`);
    an owner's `knowledge_base.embedding vector(N)` is used as the vector column, so N must be
    `embedding_dim`."""
    found = existing_seed_tables(bind)
    if found and bind.dialect.name != "postgresql":
        raise Incompatible(f"{found[0]} exists already: adopting an existing schema needs PostgreSQL")
    plans = [plan_table(bind, metadata.tables[name]) for name in found]
    for table in plans:
        vector = re.match(r"^vector\((\d+)\)$", column_types(bind, table.table).get("embedding", ""))
        if table.table == "knowledge_base" and vector and int(vector.group(1)) != embedding_dim:
            table.problems.append(vector_mismatch("embedding", int(vector.group(1)), embedding_dim))
    return plans


def check_all(bind: sa.Connection, metadata: sa.MetaData, embedding_dim: int) -> None:
    """Every existing seed table checked against the models at once, before the first change,
    so the error lists every problem."""
    problems = [problem for table in plan(bind, metadata, embedding_dim) for problem in table.problems]
    if problems:
        raise Incompatible("cannot adopt the existing tables, nothing was changed: " + "; ".join(problems))


def add_columns(op: Any, table: str, *columns: sa.Column[Any]) -> None:
    """Add columns to a Switchboard table; on an adopted one, a column its owner already has is
    used as it is (Incompatible if its type does not fit)."""
    bind = op.get_bind()
    owned = pre_existing_columns(bind, table)
    existing = {c["name"]: c for c in sa.inspect(bind).get_columns(table)} if owned else {}
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in columns:
            if column.name in owned and column.name in existing:
                problem = _type_problem(_want(column), existing[column.name]["type"])
                if problem:
                    kind = column_types(bind, table)[column.name]
                    raise Incompatible(f"{table}.{column.name} is {kind}; Switchboard needs {problem}")
                continue
            batch_op.add_column(column)


def drop_columns(op: Any, table: str, *names: str) -> None:
    """Drop columns Switchboard added — never one the table's owner had before."""
    owned = pre_existing_columns(op.get_bind(), table)
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name in names:
            if name not in owned:
                batch_op.drop_column(name)


def replace_check(op: Any, table: str, name: str, condition: str) -> None:
    """A check constraint made anew — but not on an adopted table: even `NOT VALID`, PostgreSQL checks a
    row again on every update, so a legacy row could then be neither changed nor set aside.
    Rows there are checked as Switchboard reads them instead (`db.runs.unfit`)."""
    bind = op.get_bind()
    if adopted(bind, table):
        return
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(name, type_="check")
        batch_op.create_check_constraint(name, sa.text(condition))


def release_or_drop(op: Any, name: str) -> None:
    """The downgrade of `adopt_or_create`: drop a table Switchboard created; of one it adopted,
    drop only what Switchboard added (its columns, with their indexes, and its constraints)."""
    bind = op.get_bind()
    if not adopted(bind, name):
        op.drop_table(name)
        return
    owned = pre_existing_columns(bind, name)
    for constraint in sorted(n for n in _recorded(bind, name, ["constraint"]) if n):
        op.execute(sa.text(f'ALTER TABLE "{name}" DROP CONSTRAINT IF EXISTS "{constraint}"'))
    for index in sorted(n for n in _recorded(bind, name, ["index"]) if n):
        op.execute(sa.text(f'DROP INDEX IF EXISTS "{index}"'))
    for column in sa.inspect(bind).get_columns(name):
        if column["name"] not in owned:
            op.execute(sa.text(f'ALTER TABLE "{name}" DROP COLUMN "{column["name"]}" CASCADE'))
    bind.execute(sa.delete(ledger).where(ledger.c.table_name == name))
