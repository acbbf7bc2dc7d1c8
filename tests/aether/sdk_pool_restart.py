"""Pending pool tasks across a node restart, with the real Python SDK (0.2.3). Run by
tests/aether_gateway.rs in two steps around a restart:

    sdk_pool_restart.py create GATEWAY   -> prints {"pending": [...], "cancelled": "..."}
    sdk_pool_restart.py work GATEWAY IDS -> a worker connects after the restart and gets exactly
                                            the pending ones (never the cancelled one)

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import json
import sys

from task_worker import connected_worker


MODE, GATEWAY = sys.argv[1], sys.argv[2]


async def connected(implementation, spec):
    return await connected_worker(GATEWAY, "default", implementation, spec)


async def create():
    planner, _ = await connected("planner", "p1")
    ids = []
    for i in range(4):
        r = await planner.create_task_sync("nightly", "default", target_implementation="night-w",
                                           payload=json.dumps({"n": i}).encode())
        assert r is not None and r.success and r.status == "pending_pool", r
        ids.append(r.task_id)
    c = await planner.cancel_task(ids[1])
    assert c is not None and c.success, c
    await planner.close()
    print(json.dumps({"pending": [ids[0], ids[2], ids[3]], "cancelled": ids[1]}), flush=True)


async def work(ids):
    worker, assigned = await connected("night-w", "n1")
    got = []
    try:
        while True:
            got.append(await asyncio.wait_for(assigned.get(), 2.0))
    except asyncio.TimeoutError:
        pass
    got_ids = [a.task_id for a in got]
    assert got_ids == ids["pending"], (got_ids, ids)
    assert json.loads(got[0].payload) == {"n": 0}, got[0].payload
    for a in got:
        r = await worker.complete_task(a.task_id)
        assert r is not None and r.success, r
    await worker.close()
    print("ok pending pool tasks wait across a restart and are delivered in order, the cancelled one never", flush=True)


if MODE == "create":
    asyncio.run(create())
else:
    asyncio.run(work(json.loads(sys.argv[3])))
