#!/usr/bin/env python3
"""A fake OpenAI-compatible LLM server (stdlib only) on 127.0.0.1, so real agents (Hermes,
OpenClaw) run offline in the opt-in tests. `--port 0` picks a free port and prints
`LISTENING <port>` on stdout.

GET /v1/models; POST /v1/chat/completions (JSON or SSE when "stream": true). The answer is
scripted from the last user message: "say exactly X" → "X"; otherwise "FAKE-LLM: <message>".
Paths work with or without the /v1 prefix.
"""
import argparse
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def last_user_text(messages):
    for m in reversed(messages or []):
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, list):
            c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
        if isinstance(c, str) and "OPENCLAW_INTERNAL_CONTEXT" not in c:
            return c
    return ""


def answer(prompt):
    m = re.search(r"say exactly\s+(.+)", prompt, re.IGNORECASE)
    if m:
        return m.group(1).strip().strip(".\"'` ").split("\n")[0].strip(".\"'` ")
    return "FAKE-LLM: " + prompt.strip()[:200]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "fake", "context_length": 200000, "max_model_len": 200000}]})
        else:
            self._json(404, {"error": {"message": f"unknown path {path}", "type": "not_found"}})

    def do_POST(self):
        path = self.path.split("?")[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not path.rstrip("/").endswith("chat/completions"):
            self._json(404, {"error": {"message": f"unknown path {path}", "type": "not_found"}})
            return
        text = answer(last_user_text(body.get("messages")))
        model = body.get("model", "fake-model")
        created = int(time.time())
        if not body.get("stream"):
            self._json(200, {"id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": model,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def frame(delta, finish=None):
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

        frame({"role": "assistant", "content": ""})
        for i in range(0, len(text), 8):
            frame({"content": text[i:i + 8]})
        frame({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
            self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
