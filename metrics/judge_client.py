"""A small OpenAI-compatible chat-completions client for LLM judges: bounded concurrency, retries with backoff on
429 / 5xx / timeouts / malformed bodies, and an on-disk response cache.

Hand-written on the standard library (urllib + threads + sqlite3) because no HTTP client library is a project
dependency and the needs are narrow. The API key is read from an environment variable at request time and never
stored, logged, hashed into cache keys, or put in error messages.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

from selector.core.errors import MmselectError
from selector.core.metric_api import Limiter

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ChatConfig:
    url: str  # base URL (".../v1") or the full ".../chat/completions" endpoint
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 64
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 1.0  # first retry waits about this long, doubling each time
    backoff_max: float = 30.0
    concurrency: int = 8
    seed: int = 0  # jitter of the backoff only

    @property
    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


@dataclass(frozen=True)
class Reply:
    """One request's outcome: `text` on success, else `error` (why it failed after all retries)."""

    text: str | None
    error: str | None = None
    attempts: int = 1
    cached: bool = False


class ResponseCache:
    """Successful replies keyed by a hash of (endpoint, model, messages, sampling settings); thread-safe, and safe
    to share between processes (workers, Ray actors): WAL journal, so readers never block the one writer, and a
    busy timeout, so writers queue instead of failing with "database is locked". A cache is an optimisation: a
    read or write that still fails (a lock held past the timeout, a full disk) is a miss, never a failed run."""

    BUSY_TIMEOUT = 60.0  # seconds a writer waits for another process's write

    def __init__(self, path: str | os.PathLike):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=self.BUSY_TIMEOUT)
            self._db.execute("PRAGMA journal_mode=WAL")  # where the filesystem cannot, SQLite keeps its default
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a crash may lose the last replies
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise MmselectError(f"the judge's response cache {self.path} cannot be used ({exc}); delete it (it only "
                                "saves repeated requests) or pass --no-cache") from None
        self._lock = threading.Lock()
        self._warned = False

    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        if not self._warned:
            self._warned = True
            log.warning("judge response cache %s: %s failed (%s); going on without it for those replies",
                        self.path, what, exc)

    def get(self, key: str) -> str | None:
        try:
            with self._lock:
                row = self._db.execute("SELECT text FROM replies WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._failed("a read", exc)
            return None
        return row[0] if row else None

    def put(self, key: str, text: str) -> None:
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, text))
                self._db.commit()
            except sqlite3.Error as exc:
                self._failed("a write", exc)
                try:
                    self._db.rollback()
                except sqlite3.Error:
                    pass

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class _RedirectRefused(Exception):
    def __init__(self, target: str):
        super().__init__(target)
        self.target = target


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the same scheme, host and port. A redirect elsewhere (another host, or
    https -> http) is refused: the request carries the API key, and another host's reply is not the judge's."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if _origin(newurl) != _origin(req.full_url):
            scheme, host, port = _origin(newurl)
            raise _RedirectRefused(f"{scheme}://{host}:{port}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirects)


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


def _retry_after(headers) -> float | None:
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _content(body: bytes) -> str:
    """The assistant text of a chat-completions body; raises ValueError when the body is not one."""
    data = json.loads(body)
    msg = data["choices"][0]["message"]
    content = msg.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise ValueError("no message content")
    return content


class ChatClient:
    """Send chat requests with bounded concurrency; every request ends as text or as a stated failure."""

    def __init__(self, config: ChatConfig, cache: ResponseCache | None = None, limiter: Limiter | None = None):
        """`limiter`: a run-wide limit shared with other processes, held around each attempt (not during backoff);
        the thread pool of `complete_many` still bounds this client's own requests."""
        self.config, self.cache, self.limiter = config, cache, limiter
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()
        self.counters = {"requests": 0, "retries": 0, "cache_hits": 0, "failures": 0}
        self._count_lock = threading.Lock()

    def _count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self.counters[key] += n

    def cache_key(self, messages: list[dict]) -> str:
        c = self.config
        blob = json.dumps({"endpoint": c.endpoint, "model": c.model, "messages": messages,
                           "temperature": c.temperature, "max_tokens": c.max_tokens}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _post(self, payload: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.config.endpoint, data=payload, headers=headers, method="POST")
        try:
            with _OPENER.open(req, timeout=self.config.timeout) as resp:
                body = resp.read()
        except _RedirectRefused as exc:
            raise RuntimeError(f"the judge server redirected to another host ({exc.target}); refused, the API key "
                               "is only sent to --judge-url's host") from None
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace").strip() if exc.fp else ""
            if key:
                detail = detail.replace(key, "***")
            reason = f"HTTP {exc.code}" + (f": {detail}" if detail else "")
            if exc.code in RETRY_STATUS:
                raise _Retryable(reason, _retry_after(exc.headers)) from None
            raise RuntimeError(reason) from None
        except (socket.timeout, TimeoutError):
            raise _Retryable(f"timed out after {self.config.timeout:g} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                raise _Retryable(f"timed out after {self.config.timeout:g} s") from None
            raise _Retryable(f"connection failed: {exc.reason}") from None
        except (ConnectionError, HTTPException, OSError) as exc:
            raise _Retryable(f"connection failed: {type(exc).__name__}: {exc}") from None
        try:
            return _content(body)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise _Retryable(f"malformed response: {body[:80]!r}") from None

    def _post_limited(self, payload: bytes) -> str:
        if self.limiter is None:
            return self._post(payload)
        token = self.limiter.acquire()
        try:
            return self._post(payload)
        finally:
            self.limiter.release(token)

    def complete(self, messages: list[dict]) -> Reply:
        c = self.config
        key = self.cache_key(messages)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self._count("cache_hits")
                return Reply(hit, cached=True)
        payload = json.dumps({"model": c.model, "messages": messages, "temperature": c.temperature,
                              "max_tokens": c.max_tokens}).encode()
        last = "no attempt"
        for attempt in range(c.max_retries + 1):
            self._count("requests")
            try:
                text = self._post_limited(payload)
            except _Retryable as exc:
                last = exc.reason
                if attempt == c.max_retries:
                    break
                self._count("retries")
                with self._rng_lock:
                    jitter = 0.5 + self._rng.random() / 2
                delay = min(c.backoff_max, c.backoff * 2 ** attempt) * jitter
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, c.backoff_max))
                time.sleep(delay)
                continue
            except RuntimeError as exc:  # not retryable (400, 401, 404, ...)
                self._count("failures")
                return Reply(None, str(exc), attempt + 1)
            if self.cache is not None:
                self.cache.put(key, text)
            return Reply(text, None, attempt + 1)
        self._count("failures")
        return Reply(None, f"{last} (gave up after {c.max_retries + 1} attempts)", c.max_retries + 1)

    def complete_many(self, conversations: list[list[dict]]) -> list[Reply]:
        """Replies in input order; at most `concurrency` requests in flight."""
        if len(conversations) <= 1 or self.config.concurrency <= 1:
            return [self.complete(m) for m in conversations]
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(conversations))) as pool:
            return list(pool.map(self.complete, conversations))

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)
