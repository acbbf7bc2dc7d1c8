"""Test double for the `polling` dialect of adapter `acp_http`: the Go node's simple run API
(contract §8.6 / §8.9). Standard library only.

usage: polling_agent.py --port PORT

POST /runs {"messages": [{role: system, content: "aethrolink_control", control: {...}},
                         {role: user, content: "<payload JSON>"}]}
  payload `mode`: success (default; completes after 150 ms with {text: "ok"}), await_then_resume
  (awaiting_input until resumed, then completes with {text: "resumed: <answer>"}), submit_fail
  (422), launch_fail (failed at once, reason launch_failed), hang (runs until cancelled).
GET /runs/{id}, POST /runs/{id}/resume, POST /runs/{id}/cancel, GET /ping.
"""

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNS = {}
LOCK = threading.Lock()


def later(seconds, fn):
    t = threading.Timer(seconds, fn)
    t.daemon = True
    t.start()


def set_status(run_id, status, **extra):
    with LOCK:
        run = RUNS[run_id]
        if run["status"] in ("completed", "failed", "cancelled"):
            return
        run["status"] = status
        run.update(extra)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def do_GET(self):
        if self.path == "/ping":
            return self.reply(200, {"ok": True})
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "runs":
            with LOCK:
                run = dict(RUNS.get(parts[1]) or {})
            if not run:
                return self.reply(404, {"error": "not_found", "status": "failed", "reason": "not_found"})
            return self.reply(200, run)
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        body = self.body()
        if body is None:
            return self.reply(400, {"error": "invalid_json"})
        if parts == ["runs"]:
            messages = body.get("messages") or []
            try:
                payload = json.loads(messages[1]["content"])
            except (IndexError, KeyError, TypeError, ValueError):
                return self.reply(422, {"error": "messages[1].content must be the payload JSON"})
            mode = payload.get("mode", "success")
            if mode == "submit_fail":
                return self.reply(422, {"error": "submit_failed"})
            run_id, session_id = f"run_{uuid.uuid4().hex}", f"sess_{uuid.uuid4().hex}"
            status = "awaiting_input" if mode == "await_then_resume" else "running"
            control = messages[0].get("control") or {}
            with LOCK:
                RUNS[run_id] = {"run_id": run_id, "session_id": session_id, "status": status,
                                "control_task_id": control.get("task_id")}
            if mode == "success":
                later(0.15, lambda: set_status(run_id, "completed", result={"text": "ok"}))
            elif mode == "launch_fail":
                set_status(run_id, "failed", reason="launch_failed")
            return self.reply(200, {"run_id": run_id, "session_id": session_id})
        if len(parts) == 3 and parts[0] == "runs" and parts[2] in ("resume", "cancel"):
            run_id = parts[1]
            with LOCK:
                known = run_id in RUNS
            if not known:
                return self.reply(404, {"error": "not_found"})
            if parts[2] == "resume":
                set_status(run_id, "running")
                answer = body.get("text", "")
                later(0.08, lambda: set_status(run_id, "completed", result={"text": f"resumed: {answer}"}))
            else:
                set_status(run_id, "cancelled")
            return self.reply(200, {"ok": True})
        self.reply(404, {"error": "not_found"})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    httpd.daemon_threads = True
    print(json.dumps({"listening": args.port}), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
