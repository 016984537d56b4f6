"""Revision 0004 gives the runs that exist already their searchable text."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import insert, select

from spindle.db.engine import create_engine
from spindle.db.tables import run_texts, runs
from spindle.domain import RunRequest
from spindle.runs.store import search_text
from tests.db.test_migrations import migrate


async def test_upgrade_fills_run_texts_for_existing_runs(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        await migrate(engine, "upgrade", "0001")
        now = datetime.now(UTC)
        made = []
        async with engine.begin() as conn:
            for n in range(2005):  # more than one batch
                run_id = str(uuid.uuid4())
                tags = {"Project": f"Ünï {n}"} if n % 2 else {}
                made.append((run_id, f"flows/Main{n}.cwl", tags))
                await conn.execute(
                    insert(runs).values(
                        id=run_id,
                        state="COMPLETE",
                        workflow_type="CWL",
                        workflow_type_version="v1.2",
                        workflow_url=f"flows/Main{n}.cwl",
                        workflow_params={},
                        workflow_engine_parameters={},
                        tags=tags,
                        engine="cwltool",
                        compute_env="local",
                        submitted_at=now,
                        updated_at=now,
                        cmd=[],
                        system_logs=[],
                        outputs={},
                    )
                )
        await migrate(engine, "upgrade", "head")
        async with engine.connect() as conn:
            found = dict(
                (
                    await conn.execute(
                        select(runs.c.id, run_texts.c.text).join(
                            run_texts, run_texts.c.seq == runs.c.seq
                        )
                    )
                ).all()
            )
        assert len(found) == len(made)
        for run_id, url, tags in made:
            request = RunRequest(
                workflow_type="CWL", workflow_type_version="v1.2", workflow_url=url, tags=tags
            )
            assert found[run_id] == search_text(run_id, request)
        assert found[made[1][0]].endswith("project=ünï 1")
    finally:
        await engine.dispose()
