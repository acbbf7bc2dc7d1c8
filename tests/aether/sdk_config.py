"""The ConfigSnapshot an agent gets at connect carries its private KV scopes, with the real
Python SDK (0.2.3). Run by tests/aether_gateway.rs:

    sdk_config.py TARGET

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import sys
import time

from scitrera_aether_client import AsyncAgentClient, AsyncTaskClient

TARGET = sys.argv[1]


def ok(name):
    print(f"ok {name}", flush=True)


async def connected(client):
    configs = asyncio.Queue()

    async def on_config(config):
        await configs.put(config)

    client.on_config = on_config
    await client.connect(TARGET)
    for _ in range(500):
        if client.is_connected:
            return client, configs
        await asyncio.sleep(0.02)
    raise AssertionError("never connected")


async def reconnect(make):
    """Connects a new client for an identity just closed (its lock is freed once the node sees
    the stream end)."""
    deadline = time.monotonic() + 10
    while True:
        client, configs = await connected(make())
        try:
            return client, await asyncio.wait_for(configs.get(), 2)
        except asyncio.TimeoutError:
            await client.close()
            assert time.monotonic() < deadline, "no config after reconnecting"


async def main():
    agent, configs = await connected(AsyncAgentClient("default", "cfg", "a"))
    first = await asyncio.wait_for(configs.get(), 10)
    assert not first.workspace_exclusive_kv and not first.global_exclusive_kv, first
    assert (await agent.kv_put("model", b"m-1", scope="workspace-exclusive")).success
    assert (await agent.kv_put("budget", b"10", scope="global-exclusive")).success
    assert (await agent.kv_put("shared", b"s", scope="workspace")).success
    await agent.close()
    ok("a new agent's snapshot is empty")

    agent, config = await reconnect(lambda: AsyncAgentClient("default", "cfg", "a"))
    assert dict(config.workspace_exclusive_kv) == {"model": b"m-1"}, config
    assert dict(config.global_exclusive_kv) == {"budget": b"10"}, config
    assert not config.kv and not config.global_kv, config
    ok("the snapshot carries the agent's private scopes")

    other, configs = await connected(AsyncAgentClient("default", "cfg", "b"))
    theirs = await asyncio.wait_for(configs.get(), 10)
    assert not theirs.workspace_exclusive_kv and not theirs.global_exclusive_kv, theirs
    elsewhere, configs = await connected(AsyncAgentClient("other-ws", "cfg", "a"))
    moved = await asyncio.wait_for(configs.get(), 10)
    assert not moved.workspace_exclusive_kv and dict(moved.global_exclusive_kv) == {"budget": b"10"}, moved
    ok("another agent's snapshot has none of it; the workspace scope is per workspace")

    pooled, configs = await connected(AsyncTaskClient("default", "cfg"))
    snapshot = await asyncio.wait_for(configs.get(), 10)
    assert not snapshot.workspace_exclusive_kv and not snapshot.global_exclusive_kv, snapshot
    ok("a pooled task gets an empty snapshot")

    for c in (agent, other, elsewhere, pooled):
        await c.close()


if __name__ == "__main__":
    asyncio.run(main())
    print("all checks passed", flush=True)
