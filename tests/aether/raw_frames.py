"""Malformed and oversize frames on a raw Connect stream (grpcio, bytes written as they are),
then a real SDK client that must still be served. Run by tests/aether_gateway.rs:

    raw_frames.py TARGET

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import queue
import sys

import grpc
from scitrera_aether_client import AsyncAgentClient
from scitrera_aether_client.proto import aether_pb2

TARGET = sys.argv[1]
METHOD = "/aether.v1.AetherGateway/Connect"


def ok(name):
    print(f"ok {name}", flush=True)


def init(spec):
    return aether_pb2.UpstreamMessage(init=aether_pb2.InitConnection(
        agent=aether_pb2.AgentIdentity(workspace="default", implementation="raw", specifier=spec),
        client_sdk="python", client_version="raw")).SerializeToString()


def stream(frames, options=(), stop_at_ack=False):
    """Writes `frames` (bytes) on one Connect stream; returns (payload kinds read, final code)."""
    outgoing = queue.Queue()
    for f in frames:
        outgoing.put(f)

    def requests():
        while True:
            item = outgoing.get()
            if item is None:
                return
            yield item

    channel = grpc.insecure_channel(TARGET, options=list(options))
    call = channel.stream_stream(METHOD, request_serializer=lambda b: b,
                                 response_deserializer=aether_pb2.DownstreamMessage.FromString)
    kinds = []
    try:
        for frame in call(requests(), timeout=15):
            kinds.append(frame.WhichOneof("payload"))
            if kinds[-1] == "connection_ack" and stop_at_ack:
                return kinds, "OK"
        return kinds, "OK"
    except grpc.RpcError as e:
        return kinds, e.code().name
    finally:
        outgoing.put(None)
        channel.close()


async def sdk_still_served():
    client = AsyncAgentClient("default", "raw", "after", max_retries=1)
    await client.connect(TARGET)
    for _ in range(500):
        if client.is_connected:
            break
        await asyncio.sleep(0.02)
    assert client.is_connected, "the node no longer serves"
    r = await client.kv_put("k", b"v")
    assert r is not None and r.success, r
    await client.close()


def main():
    kinds, code = stream([b"\xff\xff\xff\xff"])
    assert code == "INVALID_ARGUMENT" and "connection_ack" not in kinds, (kinds, code)
    ok(f"a first frame that is not protobuf ends the stream with an error ({code})")

    kinds, code = stream([init("m1"), b"\x0a\xff\xff\xff\xff\x0f"])
    assert "connection_ack" in kinds and code == "INVALID_ARGUMENT", (kinds, code)
    ok(f"a malformed frame after the ack ends that stream with an error ({code})")

    big = init("o1") + b""  # the init, then a frame over the node's 16 MiB limit
    oversize = aether_pb2.UpstreamMessage(send=aether_pb2.SendMessage(
        target_topic="ag::default::raw::o1", payload=b"x" * (17 * 1024 * 1024))).SerializeToString()
    kinds, code = stream([big, oversize], options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    assert code == "RESOURCE_EXHAUSTED", (kinds, code)
    ok(f"an oversize frame ends that stream with an error ({code})")

    kinds, code = stream([init("m1")], stop_at_ack=True)  # the identity of the broken stream is free again
    assert "connection_ack" in kinds, (kinds, code)
    ok("the identity of a broken stream is released")

    asyncio.run(sdk_still_served())
    ok("the node keeps serving other clients")


if __name__ == "__main__":
    main()
    print("all checks passed", flush=True)
