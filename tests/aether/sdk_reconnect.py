"""Auto-reconnect of the real Python SDK (0.2.3) across node restarts. Run by
tests/aether_gateway.rs, which restarts the node on the same ports and database between rounds:

    sdk_reconnect.py TARGET ROUNDS

Connects an async and a sync agent, writes a KV key and a checkpoint, prints `ready`; then for
each round waits until both clients have reconnected on their own, checks that what was written
before is still there and that the two still exchange messages, and prints `ok round N`. Any
failure raises (exit status 1).
"""
import asyncio
import queue
import sys
import threading
import time

from scitrera_aether_client import AgentClient, AsyncAgentClient

TARGET, ROUNDS = sys.argv[1], int(sys.argv[2])
# Retry forever with a short, capped backoff: the node is down only while the test restarts it.
RETRY = dict(max_retries=0, initial_backoff=0.2, max_backoff=1.0, auto_reconnect=True)


async def main():
    async_connects = 0
    async_inbox = asyncio.Queue()

    async def on_async_connect():
        nonlocal async_connects
        async_connects += 1

    async def on_async_message(msg):
        await async_inbox.put(msg)

    a = AsyncAgentClient("default", "recon", "async", **RETRY)
    a.on_connect = on_async_connect
    a.on_message = on_async_message
    await a.connect(TARGET)

    sync_connects = 0
    sync_lock = threading.Lock()
    sync_inbox = queue.Queue()

    def on_sync_connect():
        nonlocal sync_connects
        with sync_lock:
            sync_connects += 1

    s = AgentClient("default", "recon", "sync", **RETRY)
    s.on_connect = on_sync_connect
    s.on_message = sync_inbox.put
    s.connect(TARGET)

    async def both_connected(count, within):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with sync_lock:
                sync_now = sync_connects
            if async_connects >= count and sync_now >= count and a.is_connected:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"connects: async {async_connects}, sync {sync_connects}; wanted {count}")

    await both_connected(1, 30)
    put = await a.kv_put("survives", b"restart", scope="global")
    assert put is not None and put.success, put
    saved = await a.checkpoint_save(b"\x00state\xff", key="recon")
    assert saved is not None and saved.success, saved
    print("ready", flush=True)

    loop = asyncio.get_running_loop()
    for round_no in range(1, ROUNDS + 1):
        await both_connected(round_no + 1, 90)
        got = await a.kv_get("survives", scope="global")
        assert got is not None and got.value == b"restart", got
        loaded = await a.checkpoint_load(key="recon")
        assert loaded is not None and loaded.data == b"\x00state\xff", loaded
        # Both directions still route after the reconnect. The sync client may still be settling
        # into its new stream when its on_connect fires; resend until it gets one.
        payload = f"to sync {round_no}".encode()
        deadline = time.monotonic() + 30
        while True:
            await a.send_message_to_agent("default", "recon", "sync", payload)
            try:
                msg = await loop.run_in_executor(None, lambda: sync_inbox.get(timeout=1))
                if msg.payload == payload:
                    break
            except queue.Empty:
                assert time.monotonic() < deadline, "the sync client never got a message again"
        while not sync_inbox.empty():
            sync_inbox.get_nowait()
        s.send_message_to_agent("default", "recon", "async", f"to async {round_no}".encode())
        msg = await asyncio.wait_for(async_inbox.get(), 30)
        assert msg.payload == f"to async {round_no}".encode(), msg
        assert msg.source_topic == "ag::default::recon::sync", msg.source_topic
        print(f"ok round {round_no}", flush=True)

    s.close()
    await a.close()


if __name__ == "__main__":
    asyncio.run(main())
    print("all checks passed", flush=True)
