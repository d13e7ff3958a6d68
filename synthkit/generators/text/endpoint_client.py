"""The HTTP side of the ``*/endpoint`` generators: one OpenAI-compatible chat-completions client.

:class:`EndpointClient` sends ``POST {base_url}/chat/completions`` requests (vLLM, Ollama,
llama.cpp's server, OpenAI, Azure-style gateways: anything that speaks that API) with

* **retries** on 429, 5xx, timeouts and dropped connections: exponential back-off with full
  jitter, ``Retry-After`` honoured (seconds or an HTTP date), capped at ``max_backoff``;
* **rate limits**: a sliding one-minute window over requests and tokens, shared by the worker
  threads (``max_concurrent`` requests in flight);
* an on-disk **response cache** keyed by the sha256 of the request body (atomic writes), so a
  repeated request costs nothing;
* **usage**: requests, retries, cache hits, prompt and completion tokens from the server's
  ``usage`` block, and the estimated cost when prices are given.

The API key is read from the environment variable the caller names; it is held only by the
client, never put in a repr, a log line, an exception or a file, and any text that comes back
from the server is scrubbed of it before it is shown.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from synthkit.errors import ConfigError, MissingDependencyError, SynthkitError

logger = logging.getLogger("synthkit.endpoint")

#: Status codes worth another try: rate limited, or the server (or a proxy) failed.
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_REDACTED = "[redacted]"


class EndpointError(SynthkitError):
    """A chat-completions endpoint could not be reached, refused us, or kept answering badly."""

    default_hint = (
        "Check base_url (it ends in /v1 for most servers), that the server is running and "
        "serves the model, and the rate limits; rerun: cached answers are not requested again."
    )


@dataclass
class EndpointUsage:
    """What talking to the endpoint cost: requests, retries, cache hits, tokens, money."""

    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rate_limit_wait_seconds: float = 0.0
    retry_wait_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        """Add counts (thread-safe)."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def merge(self, other: EndpointUsage) -> None:
        """Add another usage record's counts to this one."""
        self.add(**other.to_counts())

    def to_counts(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def to_dict(self, price_prompt: float | None = None, price_completion: float | None = None) -> dict[str, Any]:
        """Counts plus total tokens and the estimated cost (None without prices)."""
        out: dict[str, Any] = self.to_counts()
        out["rate_limit_wait_seconds"] = round(self.rate_limit_wait_seconds, 3)
        out["retry_wait_seconds"] = round(self.retry_wait_seconds, 3)
        out["total_tokens"] = self.prompt_tokens + self.completion_tokens
        cost = None
        if price_prompt is not None or price_completion is not None:
            cost = round(self.prompt_tokens / 1000 * (price_prompt or 0.0)
                         + self.completion_tokens / 1000 * (price_completion or 0.0), 6)
        out["estimated_cost"] = cost
        return out

    @classmethod
    def from_counts(cls, counts: dict[str, Any]) -> EndpointUsage:
        usage = cls()
        for name in usage.to_counts():
            if name in counts and counts[name] is not None:
                setattr(usage, name, type(getattr(usage, name))(counts[name]))
        return usage


class RateLimiter:
    """Sliding one-minute window over requests and tokens, shared by threads.

    ``acquire(tokens)`` blocks until one more request of about ``tokens`` tokens fits in the
    last 60 seconds' budget (a single request larger than the token budget goes alone) and
    returns how long it waited; ``settle`` replaces the estimate with the real count.
    """

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        window: float = 60.0,
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._clock, self._sleep, self._window = clock, sleep, window
        self._entries: deque[list[float]] = deque()  # [time, tokens]
        self._lock = threading.Lock()

    def acquire(self, tokens: int) -> tuple[float, list[float]]:
        """Wait for room for one request of ``tokens``; return (seconds waited, its entry)."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._entries and self._entries[0][0] <= now - self._window:
                    self._entries.popleft()
                used = sum(e[1] for e in self._entries)
                fits_requests = self.requests_per_minute is None or len(self._entries) < self.requests_per_minute
                fits_tokens = (self.tokens_per_minute is None or not self._entries
                               or used + tokens <= self.tokens_per_minute)
                if fits_requests and fits_tokens:
                    entry = [now, float(tokens)]
                    self._entries.append(entry)
                    return waited, entry
                wait = max(self._entries[0][0] + self._window - now, 0.001)
            self._sleep(wait)
            waited += wait

    def settle(self, entry: list[float], tokens: int) -> None:
        """Record the request's real token count in place of its estimate."""
        with self._lock:
            entry[1] = float(tokens)


class ResponseCache:
    """Chat-completion responses on disk, one JSON file per sha256 of the request body."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key(body: dict[str, Any]) -> str:
        """sha256 (hex) of the request body as canonical JSON."""
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached response, or None (a damaged entry counts as missing)."""
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, response: dict[str, Any]) -> None:
        """Store a response atomically (temporary file, then rename)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(response, fh, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class Completion:
    """One chat completion: the assistant's text and whether it came from the cache."""

    content: str
    cached: bool
    prompt_tokens: int
    completion_tokens: int


def read_api_key(env: str | None) -> str | None:
    """The API key from environment variable ``env`` (None: the server needs no key)."""
    if env is None:
        return None
    key = os.environ.get(env, "").strip()
    if not key:
        raise ConfigError(
            f"The environment variable {env} that should hold the endpoint's API key is not set.",
            hint=f"export {env}=... (the key is read from the environment only, never from the "
            "config), or pass api_key_env=None for a local server that needs no key.",
        )
    return key


class EndpointClient:
    """Sends chat-completion requests with retries, rate limits, a cache and usage counts."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        max_concurrent: int,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        cache_dir: str | Path | None,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError(
                "The endpoint generators need the 'httpx' package.",
                hint="pip install 'synthkit[endpoint]'",
            ) from exc
        self._httpx = httpx
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.__key = api_key
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.max_concurrent = max_concurrent
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(headers=headers, timeout=timeout,
                                    limits=httpx.Limits(max_connections=max_concurrent))
        self._random = random.Random()

    def __repr__(self) -> str:
        return f"EndpointClient(url={self.url!r}, key={'set' if self.__key else 'none'})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key (if it appears) replaced."""
        return text.replace(self.__key, _REDACTED) if self.__key else text

    # --- requests ------------------------------------------------------------------------------
    def complete_many(self, bodies: Sequence[dict[str, Any]], usage: EndpointUsage) -> list[Completion]:
        """Send every body (up to ``max_concurrent`` at a time); results in the same order."""
        if len(bodies) <= 1 or self.max_concurrent == 1:
            return [self.complete(b, usage) for b in bodies]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrent, len(bodies))) as pool:
            return list(pool.map(lambda b: self.complete(b, usage), bodies))

    def complete(self, body: dict[str, Any], usage: EndpointUsage) -> Completion:
        """One completion: from the cache when the same body was answered before, else requested."""
        key = ResponseCache.key(body)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                usage.add(cache_hits=1)
                return _completion(hit, cached=True)
        response = self._post(body, usage)
        completion = _completion(response, cached=False)
        if self.cache is not None:
            self.cache.put(key, response)
        return completion

    def _post(self, body: dict[str, Any], usage: EndpointUsage) -> dict[str, Any]:
        httpx = self._httpx
        payload = json.dumps(body, ensure_ascii=False).encode()
        estimate = len(payload) // 4 + int(body.get("max_tokens") or 256)
        last = ""
        for attempt in range(self.max_retries + 1):
            waited, entry = self.limiter.acquire(estimate)
            usage.add(rate_limit_wait_seconds=waited, requests=1)
            retry_after: float | None = None
            try:
                reply = self._client.post(self.url, content=payload)
            except httpx.TimeoutException as exc:
                last = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"could not connect ({type(exc).__name__}: {self.redact(str(exc))})"
            else:
                if reply.status_code == 200:
                    try:
                        data = reply.json()
                    except ValueError:
                        data = None
                    if isinstance(data, dict) and data.get("choices"):
                        tokens = _usage(data)
                        self.limiter.settle(entry, sum(tokens))
                        usage.add(prompt_tokens=tokens[0], completion_tokens=tokens[1])
                        return data
                    last = "answered 200 without a chat completion in the body"
                elif reply.status_code in RETRY_STATUS:
                    last = f"answered HTTP {reply.status_code}: {self._detail(reply)}"
                    retry_after = _retry_after(reply.headers.get("retry-after"))
                else:
                    usage.add(failed_requests=1)
                    raise self._refused(reply)
            usage.add(failed_requests=1)
            if attempt == self.max_retries:
                break
            wait = retry_after if retry_after is not None else self._backoff(attempt)
            wait = min(wait, self.max_backoff)
            logger.warning("endpoint %s %s; retry %d of %d in %.2fs", self.url, last, attempt + 1,
                           self.max_retries, wait)
            usage.add(retries=1, retry_wait_seconds=wait)
            time.sleep(wait)
        raise EndpointError(
            f"The endpoint {self.url} {last}, after {self.max_retries + 1} attempt(s).",
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential back-off with full jitter: uniform in [0, backoff * 2**attempt]."""
        return self._random.uniform(0.0, min(self.max_backoff, self.backoff * 2**attempt))

    def _detail(self, reply: Any) -> str:
        text = reply.text.strip().replace("\n", " ")
        return self.redact(text[:300]) or reply.reason_phrase

    def _refused(self, reply: Any) -> EndpointError:
        code = reply.status_code
        detail = self._detail(reply)
        if code in (401, 403):
            return EndpointError(
                f"The endpoint {self.url} refused the API key (HTTP {code}): {detail}",
                hint="Check the key in the environment variable named by api_key_env, and that "
                "it may use this model.",
            )
        if code == 404:
            return EndpointError(
                f"The endpoint {self.url} answered HTTP 404: {detail}",
                hint="Check base_url (most servers want it to end in /v1) and the model name.",
            )
        return EndpointError(
            f"The endpoint {self.url} rejected the request (HTTP {code}): {detail}",
            hint="Check the model name and that the server supports response_format json_schema "
            "(vLLM, llama.cpp, Ollama and OpenAI do); lower rows_per_request if the prompt is too long.",
        )


def _completion(data: dict[str, Any], *, cached: bool) -> Completion:
    try:
        message = data["choices"][0]["message"]
        content = message.get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise EndpointError("The endpoint answered without choices[0].message.") from exc
    prompt, completion = _usage(data)
    return Completion(str(content), cached, prompt, completion)


def _usage(data: dict[str, Any]) -> tuple[int, int]:
    usage = data.get("usage") or {}
    try:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (TypeError, ValueError):
        return 0, 0


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
