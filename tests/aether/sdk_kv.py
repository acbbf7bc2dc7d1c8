"""KV and checkpoints through the node's Aether gateway with the real Python SDK (0.2.3).
Run by tests/aether_gateway.rs:

    sdk_kv.py TARGET

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import queue
import sys

from scitrera_aether_client import AgentClient, AsyncAgentClient

TARGET = sys.argv[1]


async def connected(spec):
    client = AsyncAgentClient("default", "kv-test", spec)
    await client.connect(TARGET)
    for _ in range(500):
        if client.is_connected:
            return client
        await asyncio.sleep(0.02)
    raise AssertionError(f"{spec} never connected")


def ok(name):
    print(f"ok {name}", flush=True)


async def async_checks():
    a, b = await connected("a"), await connected("b")
    missing = await a.kv_get("nothing-here")
    assert missing is not None and missing.success and missing.value == b"", missing
    put = await a.kv_put("greeting", b"hello", scope="global")
    assert put is not None and put.success, put
    got = await b.kv_get("greeting", scope="global")
    assert got.success and got.value == b"hello", got
    ok("global KV is shared between agents; a missing key is an empty success")

    await a.kv_put("mine", b"secret-a", scope="user", user_id="alice")
    theirs = await b.kv_get("mine", scope="user", user_id="alice")
    assert theirs.success and theirs.value == b"", "user scope is private to the calling agent"
    mine = await a.kv_get("mine", scope="user", user_id="alice")
    assert mine.value == b"secret-a", mine
    ok("user scope is private to the calling agent")

    for k in ("p/1", "p/2", "q/1"):
        await a.kv_put(k, k.encode(), scope="workspace")
    listed = await b.kv_list("p/", scope="workspace")
    assert listed.success and sorted(listed.keys) == ["p/1", "p/2"], listed
    assert dict(listed.kv_map) == {"p/1": b"p/1", "p/2": b"p/2"}, listed
    deleted = await a.kv_delete("p/1", scope="workspace")
    assert deleted.success, deleted
    after = await b.kv_list("p/", scope="workspace")
    assert list(after.keys) == ["p/2"], after
    ok("workspace KV put, list by prefix, delete")

    saved = await a.checkpoint_save(b"state-1", key="run")
    assert saved is not None and saved.success and saved.saved_at > 0, saved
    loaded = await a.checkpoint_load(key="run")
    assert loaded.success and loaded.data == b"state-1", loaded
    other = await b.checkpoint_load(key="run")
    assert other.success and other.data == b"", "checkpoints belong to the identity"
    await a.checkpoint_save(b"d")
    keys = await a.checkpoint_list()
    assert sorted(keys.keys) == ["default", "run"], keys
    gone = await a.checkpoint_delete(key="run")
    assert gone.success, gone
    keys = await a.checkpoint_list()
    assert list(keys.keys) == ["default"], keys
    ok("checkpoints save, load, list, delete per identity")

    await a.close()
    await b.close()

    # A checkpoint survives the session: a new connection of the same identity loads it.
    again = await connected("a")
    loaded = await again.checkpoint_load()
    assert loaded.data == b"d", loaded
    await again.close()
    ok("checkpoints survive reconnects")


def sync_checks():
    replies = queue.Queue()
    client = AgentClient("default", "kv-test", "sync1", max_retries=1)
    client.on_kv_response = replies.put
    client.connect(TARGET)
    client.kv_put("sync-key", b"v", scope="global")  # no request id: the reply comes to the callback
    put = replies.get(timeout=10)
    assert put.success, put
    client.kv_get("sync-key", scope="global")
    got = replies.get(timeout=10)
    assert got.success and got.value == b"v", got
    saved = client.checkpoint_save_sync(b"s", key="k1")
    assert saved is not None and saved.success, saved
    loaded = client.checkpoint_load_sync(key="k1")
    assert loaded.data == b"s", loaded
    client.close()
    ok("sync KV replies without a request id; sync checkpoints")


if __name__ == "__main__":
    asyncio.run(async_checks())
    sync_checks()
    print("all checks passed", flush=True)
