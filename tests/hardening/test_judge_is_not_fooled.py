"""Promise: the judge's API key goes only to --judge-url's host, and only an unambiguous score is recorded."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from metrics.judge import parse_score
from metrics.judge_client import ChatClient, ChatConfig
from tests.fixtures.fake_judge_server import FakeJudge


class Redirector:
    """A server on 127.0.0.1 that answers every POST with a redirect to `target`."""

    def __init__(self, target: str, code: int = 307):
        outer = self
        self.auth_seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                outer.auth_seen.append(self.headers.get("Authorization"))
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(code)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_refused_and_the_key_not_sent(monkeypatch, code):
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-secret-123")
    with FakeJudge() as other, Redirector(other.url + "/chat/completions", code) as front:
        client = ChatClient(ChatConfig(url=front.url, model="m", api_key_env="JUDGE_TEST_KEY", max_retries=1,
                                       backoff=0.01))
        reply = client.complete([{"role": "user", "content": "case:ok-90"}])
        assert reply.text is None and "another host" in reply.error
        assert other.requests == 0 and "Bearer sk-secret-123" not in other.auth_headers
        assert "sk-secret-123" not in reply.error


def test_same_host_judge_still_works(monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "k")
    with FakeJudge(expect_key="k") as judge:
        reply = ChatClient(ChatConfig(url=judge.url, model="m", api_key_env="JUDGE_TEST_KEY")).complete(
            [{"role": "user", "content": "case:ok-42"}])
    assert reply.text.startswith("42")


@pytest.mark.parametrize("text", [
    "the answer has 2 sentences. No score.", "1e2", "Score: 1e2", "It covers 3 points well.", "85\nScore: 40",
    "I'd give it somewhere between 60 and 70", "Version 2.0 of the answer", "score: high", "2nd place", "NaN",
])
def test_replies_without_one_clear_score_are_parse_failures(text):
    value, reason = parse_score(text)
    assert value is None and reason


@pytest.mark.parametrize("text,expected", [("85", 85), ("Score: 85\nGood.", 85), ("8/10", 80), ("**72**", 72),
                                           ("Rating: 7 out of 10", 70), ("90 - accurate and detailed", 90)])
def test_clear_scores_still_parse(text, expected):
    assert parse_score(text) == (pytest.approx(expected), None)
