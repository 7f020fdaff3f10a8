"""A local OpenAI-compatible chat-completions server for tests and benchmarks (127.0.0.1, a free port).

Behaviour per request is chosen by a `case:NAME` token in the prompt, so one server can answer well, slowly, with
429/500, with garbage, or with unparsable text, and count attempts per case:
  ok-N            200, reply "N" then a reason line
  429-once        429 (Retry-After: 0) on the first attempt, then "55"
  500-twice       500 twice, then "60"
  timeout-once    sleeps `slow_s` on the first attempt (longer than the client timeout), then "65"
  garbage-once    a non-JSON 200 body on the first attempt, then "70"
  garbage-always  always a non-JSON 200 body
  500-always      always 500
  401             401 (not retried)
  unparsable      200, reply "I think it is quite good."
  outofrange      200, reply "150"
Without a case token: reply "50". `latency_s` is added to every request (for the concurrency benchmark).
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_CASE = re.compile(r"case:([\w-]+)")


class FakeJudge:
    def __init__(self, latency_s: float = 0.0, slow_s: float = 1.0, expect_key: str | None = None):
        self.latency_s, self.slow_s, self.expect_key = latency_s, slow_s, expect_key
        self.attempts: Counter[str] = Counter()
        self.requests = 0
        self.auth_headers: set[str] = set()
        self._lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, body: bytes, headers: dict | None = None):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to do

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length))
                text = json.dumps(payload["messages"])
                m = _CASE.search(text)
                case = m.group(1) if m else "default"
                with judge._lock:
                    judge.requests += 1
                    judge.attempts[case] += 1
                    n = judge.attempts[case]
                    judge.auth_headers.add(self.headers.get("Authorization", ""))
                if judge.latency_s:
                    time.sleep(judge.latency_s)
                if judge.expect_key is not None and self.headers.get("Authorization") != f"Bearer {judge.expect_key}":
                    return self._send(401, b'{"error": "bad key"}')
                reply = judge.reply(case, n)
                if isinstance(reply, tuple):
                    return self._send(*reply)
                body = {"id": "x", "object": "chat.completion", "model": payload.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                     "finish_reason": "stop"}]}
                self._send(200, json.dumps(body).encode())

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default backlog of 5 drops bursts of connects (1 s SYN retry)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reply(self, case: str, n: int):
        if case.startswith("ok-"):
            return f"{case[3:]}\nA fine answer."
        if case == "429-once" and n == 1:
            return 429, b'{"error": "rate limited"}', {"Retry-After": "0"}
        if case == "500-twice" and n <= 2:
            return 500, b'{"error": "boom"}'
        if case == "timeout-once" and n == 1:
            time.sleep(self.slow_s)
        if case == "garbage-once" and n == 1 or case == "garbage-always":
            return 200, b"<html>upstream proxy error</html>"
        if case == "500-always":
            return 500, b'{"error": "down"}'
        if case == "401":
            return 401, b'{"error": "unauthorised"}'
        if case == "unparsable":
            return "I think it is quite good."
        if case == "outofrange":
            return "150"
        return {"429-once": "55", "500-twice": "60", "timeout-once": "65", "garbage-once": "70"}.get(case, "50")

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "FakeJudge":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
