"""Ids people type (`switchboard/db/ids.py`): the whole id or a unique prefix, on Postgres."""

from __future__ import annotations

import pytest

from switchboard.db.ids import resolve
from switchboard.db.models import AgentRun
from switchboard.db.session import session_scope
from switchboard.errors import InvalidState, NotFound
from tests.support.runs import empty_tables


def test_a_unique_prefix_names_its_run_and_an_ambiguous_one_names_the_candidates(database_url: str) -> None:
    empty_tables(database_url)
    ids = ["abcd1111-0000-0000-0000-000000000000", "abcd2222-0000-0000-0000-000000000000",
           "ab%d3333-0000-0000-0000-000000000000"]  # fmt: skip
    with session_scope() as session:
        session.add_all(AgentRun(id=run_id, status="queued") for run_id in ids)
    assert resolve(AgentRun, ids[0], "run") == ids[0]  # the whole id
    assert resolve(AgentRun, "abcd1", "run") == ids[0]
    assert resolve(AgentRun, "ab%d", "run") == ids[2]  # LIKE's wildcards are taken literally
    with pytest.raises(InvalidState, match=r"abcd names 2 runs \(abcd1111-.*, abcd2222-.*\): give more of the id"):
        resolve(AgentRun, "abcd", "run")
    with pytest.raises(NotFound, match="no run abce"):
        resolve(AgentRun, "abce", "run")
    with pytest.raises(NotFound, match="give at least 4 characters"):
        resolve(AgentRun, "ab", "run")
    empty_tables(database_url)
