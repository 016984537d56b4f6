"""One worker process of the claim race (tests/runs/test_claim.py).

    python tests/runs/claim_worker.py DATABASE_URL WORKER_ID

Opens its own engine, prints ``ready``, waits for a line on stdin (so every process starts
claiming at the same moment), then claims runs with ``claim_next``, one transaction per
claim, until none is left QUEUED. A claim whose transaction the database aborts (a deadlock,
say) is recorded and tried again, as the scheduler would at its next poll. Prints one JSON
line: ``{"worker": ..., "claimed": [...], "failures": [...], "seconds": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from spindle.db.engine import create_engine
from spindle.db.types import utcnow
from spindle.runs.claim import claim_next

#: Give up (and let the test fail) after this many aborted claims.
MAX_FAILURES = 20000


async def main(url: str, worker_id: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

        started = time.perf_counter()
        claimed: list[str] = []
        failures: list[str] = []
        while len(failures) < MAX_FAILURES:
            now = utcnow()
            try:
                async with engine.begin() as conn:
                    run = await claim_next(
                        conn, worker_id=worker_id, now=now, lease_until=now + timedelta(minutes=10)
                    )
            except DBAPIError as exc:
                failures.append(str(exc.orig).splitlines()[0])
                continue
            if run is None:
                break
            claimed.append(run.id)
        seconds = time.perf_counter() - started
        report = {"worker": worker_id, "claimed": claimed, "failures": failures, "seconds": seconds}
        print(json.dumps(report))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
