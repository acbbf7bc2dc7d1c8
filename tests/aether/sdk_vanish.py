"""A client that vanishes mid-stream (its process killed with SIGKILL) leaves nothing behind,
with the real Python SDK (0.2.3). Run by tests/aether_gateway.rs:

    sdk_vanish.py TARGET HTTP_BASE

Starts itself as a child (`sdk_vanish.py --child TARGET`) that connects an agent, asks for KV in
flight and streams messages to a peer, then kills it. Prints `ok <check>` per passed check; any
failure raises (exit status 1).
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from scitrera_aether_client import AsyncAgentClient

IDENTITY = "ag::default::vanish::gone"


def ok(name):
    print(f"ok {name}", flush=True)


def listed(http):
    with urllib.request.urlopen(f"{http}/v1/aether/connections", timeout=10) as resp:
        return {c["identity"] for c in json.load(resp)["connections"]}


async def connected(target, spec, inbox=None):
    client = AsyncAgentClient("default", "vanish", spec, max_retries=1)
    if inbox is not None:
        async def on_message(msg):
            await inbox.put(msg)
        client.on_message = on_message
    await client.connect(target)
    for _ in range(500):
        if client.is_connected:
            return client
        await asyncio.sleep(0.02)
    raise AssertionError(f"{spec} never connected")


async def child(target):
    client = await connected(target, "gone")
    print("connected", flush=True)
    # Keep the stream busy until the parent kills this process: requests in flight, messages out.
    n = 0
    while True:
        n += 1
        await client.kv_put_nowait(f"k{n % 16}", b"v" * 1024)
        await client.send_message_to_agent("default", "vanish", "peer", f"m{n}".encode())
        await asyncio.sleep(0.001)


async def parent(target, http):
    inbox = asyncio.Queue()
    peer = await connected(target, "peer", inbox)
    proc = subprocess.Popen([sys.executable, __file__, "--child", target], stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        assert line.strip() == "connected", line
        first = await asyncio.wait_for(inbox.get(), 10)
        assert first.source_topic == IDENTITY, first
        assert IDENTITY in listed(http)
        got = [first]
        while len(got) < 200:  # mid-stream: well into its sending
            got.append(await asyncio.wait_for(inbox.get(), 10))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ok("a client streaming messages and KV requests is killed mid-stream")

    deadline = time.monotonic() + 30
    while IDENTITY in listed(http):
        assert time.monotonic() < deadline, "the vanished session is still listed after 30 s"
        await asyncio.sleep(0.1)
    ok("its session leaves the connection listing")

    # What it sent before it died was delivered once each, in order (a torn last frame is dropped).
    while True:
        try:
            got.append(await asyncio.wait_for(inbox.get(), 1))
        except asyncio.TimeoutError:
            break
    numbers = [int(m.payload[1:]) for m in got]
    assert numbers == list(range(1, len(numbers) + 1)), numbers[:20]
    ok(f"the {len(numbers)} messages it sent arrived in order, exactly once")

    # Its identity is free, and a message sent while it was gone waits for it.
    await peer.send_message_to_agent("default", "vanish", "gone", b"while you were gone")
    back_inbox = asyncio.Queue()
    back = await connected(target, "gone", back_inbox)
    msg = await asyncio.wait_for(back_inbox.get(), 10)
    assert msg.payload == b"while you were gone", msg
    ok("its identity is free again and a message sent meanwhile is delivered")
    await back.close()
    await peer.close()
    deadline = time.monotonic() + 10
    while listed(http) & {IDENTITY, "ag::default::vanish::peer"}:
        assert time.monotonic() < deadline, listed(http)
        await asyncio.sleep(0.1)
    ok("nothing is left connected")


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        asyncio.run(child(sys.argv[2]))
    else:
        asyncio.run(parent(sys.argv[1], sys.argv[2]))
        print("all checks passed", flush=True)
