"""The LLM judge: robust score parsing, and a client that survives 429 / 500 / timeouts / garbage from a local
OpenAI-compatible server, leaving every record scored or missing with its reason (never a default)."""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest

from metrics import build
from tests.fixtures.fake_judge_server import FakeJudge
from metrics.judge import parse_score
from metrics.runner import RunnerConfig, score_records


@pytest.mark.parametrize("text,expected", [
    ("85", 85.0), ("Score: 85\nGood detail.", 85.0), ("**90**/100 because", 90.0), ("8/10", 80.0),
    ("I rate it 75 out of 100.", 75.0), ("1. The answer is fine\nScore: 40", 40.0), ("10", 10.0),
    ("95.5\nreason", 95.5), ("Rating: 7/10", 70.0), ("0", 0.0),
])
def test_parse_score_reads_the_number_not_two_characters(text, expected):
    value, reason = parse_score(text)
    assert reason is None and value == pytest.approx(expected)


@pytest.mark.parametrize("text,why", [
    ("", "empty"), (None, "empty"), ("abc", "unparsable"), ("101", "outside"), ("-5", "outside"),
    ("It is good.", "unparsable"),
])
def test_parse_score_failures_are_failures(text, why):
    value, reason = parse_score(text)
    assert value is None and why in reason


CASES = {  # case -> expected score or expected reason fragment
    "ok-73": 73.0, "ok-0": 0.0, "429-once": 55.0, "500-twice": 60.0, "timeout-once": 65.0, "garbage-once": 70.0,
    "garbage-always": "malformed response", "500-always": "HTTP 500", "401": "HTTP 401",
    "unparsable": "unparsable reply", "outofrange": "outside 0-100",
}


def _table(cases):
    ids = [f"r{i}" for i in range(len(cases))]
    return pa.table({"id": ids, "instruction": ["Describe the image."] * len(cases),
                     "answer": [f"An answer. case:{c}" for c in cases], "images": [[] for _ in cases]})


def test_judge_against_flaky_server_scores_or_explains_every_record(tmp_path, monkeypatch, caplog):
    secret = "sk-test-never-logged-123"
    monkeypatch.setenv("MMSELECT_TEST_JUDGE_KEY", secret)
    cases = list(CASES)
    cache = tmp_path / "responses.sqlite"
    with FakeJudge(slow_s=1.0, expect_key=None) as server:
        params = dict(url=server.url, model="fake-judge", api_key_env="MMSELECT_TEST_JUDGE_KEY", concurrency=4,
                      timeout=0.4, max_retries=3, backoff=0.01, response_cache=str(cache))
        with caplog.at_level(logging.DEBUG):
            table = score_records(_table(cases), [build("judge", **params)], RunnerConfig(batch_size=6))
        assert server.auth_headers == {f"Bearer {secret}"}
        values = table.column("judge").to_pylist()
        reasons = table.column("judge__reason").to_pylist()
        for case, value, reason in zip(cases, values, reasons):
            want = CASES[case]
            if isinstance(want, float):
                assert value == want and reason is None, (case, value, reason)
            else:
                assert value is None and want in reason, (case, value, reason)
        assert server.attempts["429-once"] == 2 and server.attempts["500-twice"] == 3
        assert server.attempts["500-always"] == 4 and server.attempts["401"] == 1  # 1 + 3 retries; 401 not retried
        # the key never reaches outputs, metadata or logs
        blob = str(table.to_pylist()) + str(table.schema.metadata) + caplog.text
        assert secret not in blob

        # a re-run with another runner cache is answered from the response cache for every success
        before = server.requests
        again = score_records(_table(cases), [build("judge", **params)], RunnerConfig(batch_size=6))
        successes = sum(isinstance(v, float) for v in CASES.values())
        failures = len(cases) - successes
        assert again.column("judge").to_pylist() == values
        assert server.requests - before >= failures  # only failures are asked again
        assert server.attempts["ok-73"] == 1


def test_judge_prompt_template_and_images(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4), (200, 10, 10)).save(tmp_path / "a.png")
    table = pa.table({"id": ["a", "b"], "instruction": ["What colour?", "What colour?"],
                      "answer": ["Red. case:ok-42", "Blue. case:ok-43"], "images": [["a.png"], ["missing.png"]]})
    with FakeJudge() as server:
        metric = build("judge", url=server.url, model="vlm", send_images=True, backoff=0.01,
                       prompt="Q: {instruction}\nA: {answer}\nScore 0-100 first.")
        out = score_records(table, [metric], RunnerConfig(batch_size=2, workers=0), images_root=str(tmp_path))
    assert out.column("judge").to_pylist()[0] == 42.0
    assert out.column("judge").to_pylist()[1] is None
    assert "cannot read image missing.png" in out.column("judge__reason").to_pylist()[1]
    msgs = metric.messages("What colour?", "Red.", "data:image/png;base64,AAAA")
    assert msgs[0]["content"][0]["type"] == "image_url" and "Q: What colour?" in msgs[0]["content"][1]["text"]
    with pytest.raises(ValueError, match="answer"):
        build("judge", url="http://x", model="m", prompt="no placeholders")


def test_concurrency_overlaps_requests():
    import time

    from metrics.judge_client import ChatClient, ChatConfig

    with FakeJudge(latency_s=0.1) as server:
        convs = [[{"role": "user", "content": f"q{i}"}] for i in range(16)]
        client = ChatClient(ChatConfig(url=server.url, model="m", concurrency=16, timeout=5))
        t = time.perf_counter()
        replies = client.complete_many(convs)
        elapsed = time.perf_counter() - t
    assert all(r.text == "50" for r in replies)
    assert elapsed < 1.2  # sequential takes >= 1.6 s; loose bound for a loaded CI machine


class _CountingLimiter:
    """A `Limiter` shared by several clients (as the Ray engine's actors share one), counting its calls."""

    def __init__(self, slots: int):
        import threading

        self._slots = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self.acquired = self.released = 0

    def acquire(self):
        self._slots.acquire()
        with self._lock:
            self.acquired += 1
        return self.acquired

    def release(self, token):
        with self._lock:
            self.released += 1
        self._slots.release()


def test_clients_sharing_a_limiter_keep_its_limit_and_release_after_failures():
    from concurrent.futures import ThreadPoolExecutor

    from metrics.judge_client import ChatClient, ChatConfig

    limiter = _CountingLimiter(2)
    with FakeJudge(latency_s=0.05) as server:
        config = ChatConfig(url=server.url, model="m", concurrency=4, timeout=5, max_retries=1, backoff=0.01)
        clients = [ChatClient(config, limiter=limiter) for _ in range(2)]  # 8 threads in all
        convs = [[{"role": "user", "content": f"q{i} case:{'500-always' if i % 4 == 0 else f'ok-{i}'}"}]
                 for i in range(16)]
        with ThreadPoolExecutor(2) as pool:
            replies = [r for part in pool.map(lambda c: c[0].complete_many(c[1]), zip(clients, (convs[:8], convs[8:])))
                       for r in part]
    assert server.max_in_flight == 2
    assert [r.text is None for r in replies] == [i % 4 == 0 for i in range(16)]
    assert limiter.acquired == limiter.released == server.requests == 12 + 4 * 2  # each failed one: 2 attempts
