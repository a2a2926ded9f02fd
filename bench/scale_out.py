"""Jobs per minute with 1, 2 and 3 daemons on one PostgreSQL queue: whether the queue is the bottleneck.

Each daemon is a real ``lazyd serve`` process with the FAKE backend (tests/fake_backend.py), which spends a
fixed time per second of audio and no CPU, so a daemon's throughput is known in advance: the figure to
compare with is that of one daemon times the number of daemons. Every round uses a fresh schema on the
local server (127.0.0.1:5432, database ``test``), uploads ``--jobs`` recordings of two 8 s chunks through
the first daemon and waits until all are completed.

    .venv/bin/python bench/scale_out.py [--jobs 60] [--chunk-cost 0.4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from conftest import POSTGRES_URL  # noqa: E402
from daemon_processes import CHUNK_SECS, Daemons, Database, info, login, upload  # noqa: E402
from pipeline_helpers import TONES, tone_sequence  # noqa: E402


async def round_with(nodes: int, jobs: int, chunk_cost: float, work: Path) -> float:
    """Minutes' worth of jobs done per minute with ``nodes`` daemons."""
    schema = f"lazyd_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    daemons = Daemons(work / schema, Database(f"{POSTGRES_URL}?search_path={schema}", schema=schema),
                      work / schema / "fake" / "control.json")
    try:
        daemons.control.parent.mkdir(parents=True)
        daemons.control.write_text(json.dumps({"delay": chunk_cost / CHUNK_SECS}))
        daemons.add_user("alice")
        started = [await daemons.start(LAZYD_SCHEDULER__NODE_NAME=f"node-{n}",
                                       LAZYD_LIMITS__ACTIVE_JOBS_PER_USER=str(jobs),
                                       LAZYD_LIMITS__MAX_TRANSCRIPTIONS_PER_USER=str(jobs))
                   for n in range(nodes)]
        audio = tone_sequence(work / schema / "lecture.wav", TONES[:16])  # two 8 s chunks
        async with started[0].session() as session:
            headers = await login(session)
            began = time.monotonic()
            ids = [await upload(session, headers, audio) for _ in range(jobs)]
            pending = set(ids)
            while pending:
                pending = {job_id for job_id in pending
                           if (await info(session, headers, job_id))["current_state"] != "completed"}
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - began
        return jobs / elapsed * 60
    finally:
        daemons.clean_up()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--chunk-cost", type=float, default=0.4, help="seconds the fake spends per chunk")
    args = parser.parse_args()
    per_daemon = 60 / (2 * args.chunk_cost)
    print(f"{args.jobs} jobs of two chunks, {args.chunk_cost} s per chunk: one daemon can do at most "
          f"{per_daemon:.0f} jobs/min\n")
    print("| daemons | jobs/min | n x one daemon (measured) | efficiency |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        single = None
        for nodes in (1, 2, 3):
            rate = await round_with(nodes, args.jobs, args.chunk_cost, Path(work))
            single = single or rate
            print(f"| {nodes} | {rate:.1f} | {single * nodes:.1f} | {rate / (single * nodes):.0%} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
