"""An agent an orchestrator launches (tests/aether/sdk_orchestrator.py): connects with the task
token it was given, completes the tasks it is assigned (the first one ends it), says so on stdout.

    lazy_agent.py GATEWAY WORKSPACE IMPLEMENTATION SPECIFIER TOKEN

Without arguments it reads what the node gives an agent it launches itself: AETHER_GATEWAY,
AETHER_WORKSPACE, AETHER_IMPLEMENTATION, AETHER_SPECIFIER, AETHER_AUTH_TOKEN.
"""
import asyncio
import os
import sys

from scitrera_aether_client import Credentials

from task_worker import connected_worker

ENV = ("AETHER_GATEWAY", "AETHER_WORKSPACE", "AETHER_IMPLEMENTATION", "AETHER_SPECIFIER", "AETHER_AUTH_TOKEN")
GATEWAY, WS, IMPL, SPEC, TOKEN = sys.argv[1:6] if len(sys.argv) > 5 else [os.environ[k] for k in ENV]


async def main():
    client, assigned = await connected_worker(GATEWAY, WS, IMPL, SPEC, credentials=Credentials.task_token(TOKEN),
                                              max_retries=1)
    a = await asyncio.wait_for(assigned.get(), 20)
    r = await client.complete_task(a.task_id)
    assert r is not None and r.success, r
    print(f"launched agent completed {a.task_id}", flush=True)
    await client.close()


asyncio.run(main())
