#!/usr/bin/env python3
"""Write the Aether wire schema (a serialized google.protobuf.FileDescriptorSet) as shipped by the
installed scitrera-aether-client SDK: the descriptor embedded in its generated aether_pb2 module,
plus its dependencies (none in 0.2.3), dependencies first. Deterministic bytes, so a re-dump of the
same SDK version is byte-identical to the committed file.

Usage: dump-aether-fds.py OUT_FILE    (run with the SDK venv's python)
"""
import sys

from google.protobuf import descriptor_pb2
from scitrera_aether_client.proto import aether_pb2


def collect(fd, seen, out):
    if fd.name in seen:
        return
    seen.add(fd.name)
    for dep in fd.dependencies:
        collect(dep, seen, out)
    fdp = descriptor_pb2.FileDescriptorProto()
    fd.CopyToProto(fdp)
    out.file.append(fdp)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: dump-aether-fds.py OUT_FILE")
    fds = descriptor_pb2.FileDescriptorSet()
    collect(aether_pb2.DESCRIPTOR, set(), fds)
    data = fds.SerializeToString(deterministic=True)
    with open(sys.argv[1], "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
