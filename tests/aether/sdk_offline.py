"""Messages to an agent that is not connected are kept by the node and replayed, in order and
exactly once, when it connects; with the real Python SDK (0.2.3). Run by tests/aether_gateway.rs:

    sdk_offline.py TARGET all N            # offline → replay (async and sync), during-replay order, ERR_SV_UNAVAILABLE
    sdk_offline.py TARGET send SPEC N      # send N to agent SPEC (offline), then sync on a KV round trip
    sdk_offline.py TARGET receive SPEC N   # connect as SPEC and expect exactly 0..N-1, in order

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import queue
import sys
import time

from scitrera_aether_client import AgentClient, AsyncAgentClient

TARGET = sys.argv[1]
IMPL = "offline-test"
QUIET = 1.0  # seconds without a further message before "nothing more comes"


def ok(name):
    print(f"ok {name}", flush=True)


async def connected(spec, inbox=None, errors=None):
    client = AsyncAgentClient("default", IMPL, spec)
    if inbox is not None:
        async def on_message(msg):
            await inbox.put(msg)
        client.on_message = on_message
    if errors is not None:
        async def on_error(err):
            await errors.put(err)
        client.on_error = on_error
    await client.connect(TARGET)
    for _ in range(500):
        if client.is_connected:
            return client
        await asyncio.sleep(0.02)
    raise AssertionError(f"{spec} never connected")


async def send_offline(sender, spec, n, prefix=""):
    for i in range(n):
        await sender.send_message_to_agent("default", IMPL, spec, f"{prefix}{i}".encode())
    # A KV round trip: answered only after the sends ahead of it were routed.
    got = await sender.kv_get("sync-point")
    assert got is not None and got.success, got


async def expect_in_order(inbox, expected, source):
    got = []
    while len(got) < len(expected):
        msg = await asyncio.wait_for(inbox.get(), 30)
        assert msg.source_topic == source, msg.source_topic
        got.append(msg.payload.decode())
    assert got == expected, f"out of order or wrong: first mismatch at {next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)}"
    try:
        extra = await asyncio.wait_for(inbox.get(), QUIET)
        raise AssertionError(f"delivered twice or unexpected: {extra.payload!r}")
    except asyncio.TimeoutError:
        pass


async def all_checks(n):
    a = await connected("a")
    source = f"ag::default::{IMPL}::a"

    await send_offline(a, "b-async", n)
    inbox = asyncio.Queue()
    b = await connected("b-async", inbox=inbox)
    await expect_in_order(inbox, [str(i) for i in range(n)], source)
    ok("an async agent gets what was sent while it was offline, in order, exactly once")
    await b.close()

    # After a reconnect nothing is replayed again; a new offline message is.
    await send_offline(a, "b-async", 1, prefix="again-")
    inbox = asyncio.Queue()
    b = await connected("b-async", inbox=inbox)
    await expect_in_order(inbox, ["again-0"], source)
    await b.close()
    ok("a reconnect replays only what is new")

    await send_offline(a, "b-sync", n)
    sync_inbox = queue.Queue()
    sync = AgentClient("default", IMPL, "b-sync", max_retries=1)
    sync.on_message = sync_inbox.put
    sync.connect(TARGET)
    loop = asyncio.get_running_loop()
    got = []
    while len(got) < n:
        msg = await loop.run_in_executor(None, lambda: sync_inbox.get(timeout=30))
        got.append(msg.payload.decode())
    assert got == [str(i) for i in range(n)], got[:10]
    time.sleep(QUIET)
    assert sync_inbox.empty(), "delivered twice"
    sync.close()
    ok("a sync agent gets them too")

    # Messages sent while the replay is being read come after the queued ones, none lost or twice.
    backlog = max(n, 600)
    await send_offline(a, "b-busy", backlog, prefix="q")
    inbox = asyncio.Queue()
    busy = AsyncAgentClient("default", IMPL, "b-busy")

    async def on_message(msg):
        await inbox.put(msg)

    busy.on_message = on_message
    await busy.connect(TARGET)
    live = 100
    for i in range(live):
        await a.send_message_to_agent("default", IMPL, "b-busy", f"l{i}".encode())
    expected = [f"q{i}" for i in range(backlog)] + [f"l{i}" for i in range(live)]
    await expect_in_order(inbox, expected, source)
    await busy.close()
    ok("a message sent during the replay keeps its order")

    errors = asyncio.Queue()
    c = await connected("c", errors=errors)
    await c._send_message("sv::nobody-serves-this", b"?")
    err = await asyncio.wait_for(errors.get(), 10)
    assert err.code == "ERR_SV_UNAVAILABLE", err
    await c.close()
    ok("a service wildcard with no live service is refused")
    await a.close()


async def send_only(spec, n):
    a = await connected("a")
    await send_offline(a, spec, n)
    await a.close()
    ok(f"sent {n}")


async def receive_only(spec, n):
    inbox = asyncio.Queue()
    b = await connected(spec, inbox=inbox)
    await expect_in_order(inbox, [str(i) for i in range(n)], f"ag::default::{IMPL}::a")
    await b.close()
    ok(f"received {n} in order, exactly once")


if __name__ == "__main__":
    mode = sys.argv[2]
    if mode == "all":
        asyncio.run(all_checks(int(sys.argv[3])))
    elif mode == "send":
        asyncio.run(send_only(sys.argv[3], int(sys.argv[4])))
    elif mode == "receive":
        asyncio.run(receive_only(sys.argv[3], int(sys.argv[4])))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("all checks passed", flush=True)
