"""KV counters and the gateway's connection listing, with the real Python SDK (0.2.3). Run by
tests/aether_gateway.rs:

    sdk_counters.py TARGET HTTP_BASE

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import json
import queue
import sys
import time
import urllib.request

from scitrera_aether_client import AgentClient, AsyncAgentClient

TARGET, HTTP = sys.argv[1], sys.argv[2]


def ok(name):
    print(f"ok {name}", flush=True)


def connections():
    # A loopback caller without a token may read (docs/security.md).
    req = urllib.request.Request(f"{HTTP}/v1/aether/connections")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["connections"]


async def connected(spec):
    client = AsyncAgentClient("default", "count", spec)
    await client.connect(TARGET)
    for _ in range(500):
        if client.is_connected:
            return client
        await asyncio.sleep(0.02)
    raise AssertionError(f"{spec} never connected")


async def main():
    a, b = await connected("a"), await connected("b")
    listed = {c["identity"]: c for c in connections()}
    assert "ag::default::count::a" in listed and "ag::default::count::b" in listed, listed
    entry = listed["ag::default::count::a"]
    assert entry["principal"] == "agent" and entry["workspace"] == "default", entry
    assert entry["authority"] == "claimed" and entry["session_id"].startswith("as_"), entry
    assert entry["connected_at"].endswith("Z") and entry["resumed"] is False, entry
    ok("live connections are listed over HTTP")

    for expected in (1, 2, 3):
        r = await a.kv_increment("hits")
        assert r is not None and r.success and r.counter_value == expected, r
    got = await b.kv_get("hits")
    assert got.value == b"3", got
    r = await b.kv_decrement("hits")
    assert r.success and r.counter_value == 2, r
    ok("increment and decrement count, shared in the global scope, stored as decimal text")

    assert await a.kv_increment_if("hits", delta=5, ceiling=3) == (2, False)
    assert await a.kv_increment_if("hits", delta=1, ceiling=3) == (3, True)
    assert await a.kv_decrement_if("hits", delta=4, floor=0) == (3, False)
    assert await a.kv_decrement_if("hits", delta=3, floor=0) == (0, True)
    ok("guarded updates refuse past their ceiling or floor and change nothing")

    await asyncio.gather(*[c.kv_increment("race", scope="workspace") for c in (a, b) for _ in range(50)])
    got = await a.kv_get("race", scope="workspace")
    assert got.value == b"100", got
    ok("concurrent increments from two agents lose none")

    await a.kv_put("text", b"hello")
    r = await a.kv_increment("text")
    assert r is not None and not r.success, r
    assert (await a.kv_get("text")).value == b"hello"
    ok("a counter over a value that is not one is refused and leaves it")

    r = await a.kv_increment("mine", scope="workspace-exclusive")
    theirs = await b.kv_get("mine", scope="workspace-exclusive")
    assert r.counter_value == 1 and theirs.value == b"", (r, theirs)
    ok("counters follow the scopes")

    # The sync client's increment carries no request id: its reply reaches on_kv_response.
    replies = queue.Queue()
    sync = AgentClient("default", "count", "sync", max_retries=1)
    sync.on_kv_response = replies.put
    sync.connect(TARGET)
    deadline = time.monotonic() + 10
    while not sync._session_id:
        assert time.monotonic() < deadline, "sync client never connected"
        await asyncio.sleep(0.02)
    sync.kv_increment("hits")
    reply = await asyncio.get_running_loop().run_in_executor(None, lambda: replies.get(timeout=10))
    assert reply.success and reply.counter_value == 1, reply
    sync.close()
    ok("a sync increment is answered without a request id")

    await a.close()
    await b.close()
    deadline = time.monotonic() + 10
    while any(c["identity"].startswith("ag::default::count::") for c in connections()):
        assert time.monotonic() < deadline, f"closed sessions still listed: {connections()}"
        await asyncio.sleep(0.05)
    ok("closed sessions leave the listing")


if __name__ == "__main__":
    asyncio.run(main())
    print("all checks passed", flush=True)
