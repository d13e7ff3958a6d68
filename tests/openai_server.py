"""A small OpenAI-compatible chat-completions server on loopback, answering from tiny local models.

``POST /v1/chat/completions`` checks ``Authorization: Bearer <key>`` and answers

* requests with ``response_format`` ``json_schema``: rows sampled from a synthkit tabular model
  (``tabular/copula`` fitted on real data), as many as the schema's ``maxItems``, with the
  columns its row schema names (dates as ISO strings, single-value enums honoured);
* other requests: one document sampled from a tiny ``text/gpt`` (the last ``Label: x`` line of
  the prompt conditions it).

Answers depend only on the request's ``seed``, so the same request gets the same answer.
``usage`` counts whitespace-separated words of the prompt and of the answer. ``faults`` is a
queue of faults for the next calls: ``"429"`` (with ``Retry-After``), ``"500"``,
``"malformed"`` (an answer that is not JSON), ``"bad_category"`` (the first row gets a category
outside the enum), ``"missing_field"``; ``requests`` records every call's headers and body.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import polars as pl


class OpenAIServer:
    """A chat-completions server in a background thread: ``with OpenAIServer(...) as srv:``."""

    def __init__(self, *, key: str | None, table_model: Any = None, text_model: Any = None,
                 retry_after: str = "0.05") -> None:
        self.key, self.table_model, self.text_model = key, table_model, text_model
        self.retry_after = retry_after
        self.faults: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()  # the local models are not shared across threads
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()
            self.usage = {"prompt_tokens": 0, "completion_tokens": 0}

    # --- answers --------------------------------------------------------------------------------
    def answer(self, body: dict[str, Any], fault: str | None) -> str:
        seed = int(body.get("seed") or 0)
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return self._rows(fmt["json_schema"]["schema"], seed, fault)
        prompt = body["messages"][-1]["content"]
        labels = [line[len("Label: "):].strip() for line in prompt.splitlines() if line.startswith("Label: ")]
        model = self.text_model
        conditions = {"label": labels[-1]} if labels and labels[-1] in model.classes_ else None
        return model.sample(1, seed=seed, conditions=conditions).item(0, 0)

    def _rows(self, schema: dict[str, Any], seed: int, fault: str | None) -> str:
        rows_schema = schema["properties"]["rows"]
        k = int(rows_schema.get("maxItems", 5))
        props = rows_schema["items"]["properties"]
        frame = self.table_model.sample(k, seed=seed)
        unknown = [n for n in props if n not in frame.columns]  # e.g. a kept PII column: made up
        frame = frame.with_columns(pl.Series(n, [f"{n}-{seed}-{i}" for i in range(k)]) for n in unknown)
        out = []
        for row in frame.select(list(props)).to_dicts():
            for name, prop in props.items():
                value = row[name]
                if hasattr(value, "isoformat"):
                    row[name] = value.isoformat()
                enum = prop.get("enum")
                if enum and len([e for e in enum if e is not None]) == 1:
                    row[name] = enum[0]
            out.append(row)
        if fault == "malformed":
            return '{"rows": [' + json.dumps(out[0])[:-3]
        if fault == "bad_category" and out:
            name = next(n for n, p in props.items() if "enum" in p)
            out[0][name] = "certainly not a category"
        if fault == "missing_field" and out:
            out[0].pop(next(iter(props)))
        return json.dumps({"rows": out})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                auth = self.headers.get("Authorization")
                with server._lock:
                    server.requests.append({"headers": dict(self.headers), "body": body})
                    fault = server.faults.popleft() if server.faults else None
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if server.key is not None and auth != f"Bearer {server.key}":
                    # echoes what it got, as some gateways do: the client must scrub it
                    return self._send(401, {"error": {"message": f"invalid credentials: {auth}"}})
                if fault == "429":
                    return self._send(429, {"error": {"message": "rate limited"}},
                                      {"Retry-After": server.retry_after})
                if fault == "500":
                    return self._send(500, {"error": {"message": "internal error"}})
                with server._model_lock:
                    content = server.answer(body, fault)
                prompt = sum(len(m["content"].split()) for m in body["messages"])
                completion = len(content.split())
                with server._lock:
                    server.usage["prompt_tokens"] += prompt
                    server.usage["completion_tokens"] += completion
                self._send(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                })

        return Handler

