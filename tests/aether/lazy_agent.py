"""An agent an orchestrator launches (tests/aether/sdk_orchestrator.py): connects with the task
token it was given, completes the tasks it is assigned (the first one ends it), says so on stdout.

    lazy_agent.py GATEWAY WORKSPACE IMPLEMENTATION SPECIFIER TOKEN
"""
import asyncio
import sys

from scitrera_aether_client import Credentials

from task_worker import connected_worker

GATEWAY, WS, IMPL, SPEC, TOKEN = sys.argv[1:6]


async def main():
    client, assigned = await connected_worker(GATEWAY, WS, IMPL, SPEC, credentials=Credentials.task_token(TOKEN),
                                              max_retries=1)
    a = await asyncio.wait_for(assigned.get(), 20)
    r = await client.complete_task(a.task_id)
    assert r is not None and r.success, r
    print(f"launched agent completed {a.task_id}", flush=True)
    await client.close()


asyncio.run(main())
