"""Shared by the task scripts: an async SDK agent whose `TaskAssignment`s land in a queue (the
SDK awaits its callbacks inside its receive loop, so a callback must not wait on a reply)."""
import asyncio

from scitrera_aether_client import AsyncAgentClient


async def connected_worker(gateway, workspace, implementation, spec, **kw):
    """Connects agent `ag::{workspace}::{implementation}::{spec}`; returns (client, assignments)."""
    client = AsyncAgentClient(workspace, implementation, spec, **kw)
    assigned = asyncio.Queue()

    async def on_assignment(a):
        await assigned.put(a)

    client.on_task_assignment = on_assignment
    await client.connect(gateway)
    for _ in range(500):
        if client.is_connected:
            return client, assigned
        await asyncio.sleep(0.02)
    raise AssertionError(f"ag::{workspace}::{implementation}::{spec} never connected")
