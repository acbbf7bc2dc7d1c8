"""The gateway over TLS with the real Python SDK (scitrera-aether-client 0.2.3). Run by
tests/aether_gateway.rs:

    sdk_tls.py TARGET CA FOREIGN_CA tls
    sdk_tls.py TARGET CA FOREIGN_CA mtls CLIENT_CERT CLIENT_KEY

Prints one `ok <check>` line per check that passed; any failure raises (exit status 1).
"""
import sys
import threading
import time

from scitrera_aether_client import AgentClient

TARGET, CA, FOREIGN_CA, MODE = sys.argv[1:5]


def ok(name):
    print(f"ok {name}", flush=True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def attempt(spec, ca, cert=None, key=None, wait=10.0, as_bytes=False):
    """Whether an AgentClient with these TLS settings gets its ConnectionAck within `wait`.
    `as_bytes`: the CA and client pair are given as PEM bytes rather than paths."""
    connected = threading.Event()
    if as_bytes:
        kwargs = {"tls_enabled": True, "tls_root_cert": read(ca)}
        if cert:
            kwargs.update(tls_client_cert=read(cert), tls_client_key=read(key))
    else:
        kwargs = {"tls_enabled": True, "tls_root_cert_path": ca}
        if cert:
            kwargs.update(tls_client_cert_path=cert, tls_client_key_path=key)
    client = AgentClient("default", "tls-test", spec, max_retries=1, **kwargs)
    client.on_connect = connected.set
    client.connect(TARGET)
    got = connected.wait(wait)
    client.close()
    return got


if MODE == "tls":
    assert attempt("t1", CA), "a client trusting the node's CA connects"
    ok("connected over TLS with the custom CA")
    assert attempt("t3", CA, as_bytes=True), "the CA given as bytes works too"
    ok("connected over TLS with the custom CA given as bytes")
    assert not attempt("t2", FOREIGN_CA, wait=3.0), "a client trusting another CA must not connect"
    ok("foreign CA refused")
elif MODE == "mtls":
    cert, key = sys.argv[5], sys.argv[6]
    assert attempt("m1", CA, cert, key), "a client with a certificate from the client CA connects"
    ok("mTLS client certificate accepted")
    assert attempt("m3", CA, cert, key, as_bytes=True), "the client pair given as bytes works too"
    ok("mTLS client certificate given as bytes accepted")
    assert not attempt("m2", CA, wait=3.0), "a client without a certificate must be refused"
    ok("mTLS without a client certificate refused")
else:
    raise SystemExit(f"unknown mode {MODE}")
