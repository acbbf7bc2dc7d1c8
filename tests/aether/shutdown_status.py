"""Opens a raw Connect stream (grpcio and the SDK's generated stubs), reads the ack, prints
`acked <session_id>`, then waits for the stream to end and prints `ended <STATUS>`. Run by
tests/aether_gateway.rs, which stops the node in between: the stream must end with a
recoverable status (UNAVAILABLE), never OK.

    shutdown_status.py TARGET
"""
import queue
import sys

import grpc
from scitrera_aether_client.proto import aether_pb2, aether_pb2_grpc

target = sys.argv[1]
outgoing = queue.Queue()
outgoing.put(aether_pb2.UpstreamMessage(init=aether_pb2.InitConnection(
    agent=aether_pb2.AgentIdentity(workspace="default", implementation="gw-shutdown", specifier="s1"),
    client_sdk="python", client_version="raw")))


def requests():
    while True:
        item = outgoing.get()
        if item is None:
            return
        yield item


channel = grpc.insecure_channel(target)
stub = aether_pb2_grpc.AetherGatewayStub(channel)
responses = stub.Connect(requests())
try:
    for frame in responses:
        kind = frame.WhichOneof("payload")
        if kind == "connection_ack":
            print(f"acked {frame.connection_ack.session_id}", flush=True)
    print("ended OK", flush=True)
except grpc.RpcError as e:
    print(f"ended {e.code().name}", flush=True)
finally:
    outgoing.put(None)
    channel.close()
