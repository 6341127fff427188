"""A local stand-in for the Log Analytics query API, answering the LLM-log usage query over rows it holds.

It speaks the real API's shapes (``POST /v1/workspaces/{id}/query`` with ``{"query",
"timespan"}``, a bearer token, the ``Prefer: wait=`` header; answers ``{"tables": [...]}``, a
partial answer with ``"error"`` beside the tables, a 504 when a query runs past its time, a 429
with ``Retry-After``) and enforces the workspace's limits: at most ``max_rows`` rows in an answer
(Log Analytics: 500,000) and, standing in for a query's time limit, at most ``max_scan_rows``
LLM-log rows read by one query. It runs no KQL: it reads the window and the scope from the usage
query's ``let`` lines and applies the counting rule that query states, written here again with
pandas, apart from the app's own code, so a test that compares the two compares two readings of
the rule.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd
from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.monitor.query import LogsQueryClient

MAX_ROWS = 500_000
"""Log Analytics returns at most this many rows per query."""

LLM_COLUMNS = (
    "TimeGenerated",
    "CorrelationId",
    "ModelName",
    "DeploymentName",
    "OperationName",
    "PromptTokens",
    "CompletionTokens",
    "TotalTokens",
    "IsStreamCompletion",
    "SequenceNumber",
)
GATEWAY_COLUMNS = ("TimeGenerated", "CorrelationId", "ApimSubscriptionId")
ANSWER_COLUMNS = (
    ("Kind", "string"),
    ("ApimSubscriptionId", "string"),
    ("ModelName", "string"),
    ("DeploymentName", "string"),
    ("OperationName", "string"),
    ("Calls", "long"),
    ("PromptTokens", "long"),
    ("CompletionTokens", "long"),
    ("TotalTokens", "long"),
    ("Rows", "long"),
    ("Reason", "string"),
    ("Sample", "string"),
)
_LET = re.compile(r"^let (\w+) = (.+);$", re.MULTILINE)
_DATETIME = re.compile(r"datetime\(([^)]+)\)")
_SPAN = re.compile(r"^WindowStart - (\d+)([dhm])$")


@dataclass
class Workspace:
    """The rows the stand-in holds, its limits, and the faults it is told to inject."""

    llm: pd.DataFrame
    """LLM-log rows in ``LLM_COLUMNS``; ``TimeGenerated`` as UTC ``datetime64[ns]``."""
    gateway: pd.DataFrame
    """Gateway-log rows in ``GATEWAY_COLUMNS``."""
    max_rows: int = MAX_ROWS
    max_scan_rows: int | None = None
    faults: list[int] = field(default_factory=list)
    """Statuses to answer the next queries with, in order (429 comes with ``Retry-After: 0``)."""
    retry_after: str = "0"
    queries: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    truth: dict[str, int] = field(default_factory=dict)
    """For a synthetic day: what an exact count of it gives (calls, tokens, unattributed tokens)."""

    def answer(self, query: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The status, JSON body and headers for a usage query."""
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault == 429:
            return 429, _error("TooManyRequests", "throttled"), {"Retry-After": self.retry_after}
        if fault is not None:
            return fault, _error("ServiceError", "injected"), {}
        window = parse_window(query)
        rows = self._rows(window)
        self.queries.append({"start": window.start, "end": window.end, "scanned": len(rows)})
        if self.max_scan_rows is not None and len(rows) > self.max_scan_rows:
            return 504, _error("GatewayTimeout", "the query ran past its time"), {}
        table = usage_rows(rows, self._subscriptions(window), window)
        document: dict[str, Any] = {"tables": [_table(table[: self.max_rows])]}
        if len(table) > self.max_rows:
            document["error"] = {
                "code": "PartialError",
                "message": "There were some errors when processing your query.",
                "details": [
                    {
                        "code": "EngineError",
                        "message": f"Query result set has exceeded the internal {self.max_rows} records limit",
                    }
                ],
            }
        return 200, document, {}

    def _rows(self, window: Window) -> pd.DataFrame:
        times = self.llm["TimeGenerated"]
        rows = self.llm[(times >= window.rows_start) & (times < window.rows_end)]
        return rows[rows["IsStreamCompletion"]] if window.streamed else rows

    def _subscriptions(self, window: Window) -> pd.Series:
        times = self.gateway["TimeGenerated"]
        slack = pd.Timedelta(days=1)
        near = self.gateway[(times >= window.start - slack) & (times < window.end + slack)]
        near = near[near["ApimSubscriptionId"].astype(str) != ""]
        return near.drop_duplicates("CorrelationId").set_index("CorrelationId")["ApimSubscriptionId"]


@dataclass(frozen=True)
class Window:
    """What a usage query asks for: calls first seen in [start, end), rows read ``spread`` either side."""

    start: pd.Timestamp
    end: pd.Timestamp
    spread: pd.Timedelta
    streamed: bool

    @property
    def rows_start(self) -> pd.Timestamp:
        return self.start - self.spread

    @property
    def rows_end(self) -> pd.Timestamp:
        return self.end + self.spread


def parse_window(query: str) -> Window:
    """The window, spread and scope of a usage query, from its ``let`` lines."""
    lets = dict(_LET.findall(query))
    start, end = (_moment(lets[name]) for name in ("WindowStart", "WindowEnd"))
    spread_match = _SPAN.fullmatch(lets["RowsStart"])
    if spread_match is None:
        raise ValueError("not a usage query: no RowsStart")
    unit = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}[spread_match.group(2)]
    spread = pd.Timedelta(unit * int(spread_match.group(1)))
    return Window(start, end, spread, "IsStreamCompletion == true" in query)


def _moment(text: str) -> pd.Timestamp:
    """A KQL ``datetime(...)`` literal as a naive UTC timestamp, the way the rows hold time."""
    found = _DATETIME.fullmatch(text)
    if found is None:
        raise ValueError(f"not a datetime literal: {text[:40]!r}")
    return pd.Timestamp(found.group(1)).tz_convert(None)


MAX_NAME = 512
MAX_COUNT = 10**12


def usage_rows(rows: pd.DataFrame, subscriptions: pd.Series, window: Window) -> list[list[Any]]:
    """The usage query's answer: calls per subscription, model, deployment and operation; rejected
    rows per reason; rows read."""
    counts = {
        name: rows[name].fillna(0).astype(np.int64)
        for name in ("PromptTokens", "CompletionTokens", "TotalTokens", "SequenceNumber")
    }
    reason = np.full(len(rows), "", dtype=object)
    too_long = np.zeros(len(rows), dtype=bool)
    for name in ("ModelName", "DeploymentName", "OperationName"):
        too_long |= rows[name].astype(str).str.len().to_numpy() > MAX_NAME
    bad_count = np.zeros(len(rows), dtype=bool)
    for values in counts.values():
        bad_count |= (values.to_numpy() < 0) | (values.to_numpy() >= MAX_COUNT)
    reason[too_long] = "invalid_field"
    reason[bad_count] = "invalid_tokens"
    reason[(rows["CorrelationId"].astype(str) == "").to_numpy()] = "missing_correlation_id"
    inside = ((rows["TimeGenerated"] >= window.start) & (rows["TimeGenerated"] < window.end)).to_numpy()
    answer: list[list[Any]] = []
    good = rows[reason == ""].assign(
        Prompt=counts["PromptTokens"][reason == ""],
        Completion=counts["CompletionTokens"][reason == ""],
        Total=np.where(
            counts["TotalTokens"][reason == ""] == 0,
            counts["PromptTokens"][reason == ""] + counts["CompletionTokens"][reason == ""],
            counts["TotalTokens"][reason == ""],
        ),
        Sequence=counts["SequenceNumber"][reason == ""],
    )
    answer += _calls(good, subscriptions, window)
    rejected = pd.DataFrame(
        {
            "Reason": reason[inside & (reason != "")],
            "CorrelationId": rows["CorrelationId"].astype(str).to_numpy()[inside & (reason != "")],
        }
    )
    for why, group in rejected.groupby("Reason"):
        answer.append(
            [
                "rejected",
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                len(group),
                why,
                group["CorrelationId"].iloc[0][:64],
            ]
        )
    answer.append(["read", None, None, None, None, None, None, None, None, int(inside.sum()), None, None])
    return answer


def _calls(good: pd.DataFrame, subscriptions: pd.Series, window: Window) -> list[list[Any]]:
    if good.empty:
        return []
    ordered = good.sort_values(["CorrelationId", "TimeGenerated", "Sequence"], kind="stable")
    first = ordered.drop_duplicates("CorrelationId", keep="first").set_index("CorrelationId")
    largest = ordered.groupby("CorrelationId", sort=False, observed=True)[["Prompt", "Completion", "Total"]].max()
    calls = first[["TimeGenerated", "ModelName", "DeploymentName", "OperationName"]].join(largest)
    calls = calls[(calls["TimeGenerated"] >= window.start) & (calls["TimeGenerated"] < window.end)]
    found = calls.index.to_series().map(subscriptions).astype(object)
    calls["ApimSubscriptionId"] = found.where(found.notna(), "").astype(str).to_numpy()
    keys = ["ApimSubscriptionId", "ModelName", "DeploymentName", "OperationName"]
    summed = calls.groupby(keys, sort=True, observed=True).agg(
        Calls=("Total", "size"),
        PromptTokens=("Prompt", "sum"),
        CompletionTokens=("Completion", "sum"),
        TotalTokens=("Total", "sum"),
    )
    counts = summed[["Calls", "PromptTokens", "CompletionTokens", "TotalTokens"]].to_numpy(dtype=np.int64).tolist()
    return [
        [
            "usage",
            *(str(k) for k in key),
            *counts[index],
            None,
            None,
            None,
        ]
        for index, key in enumerate(summed.index)
    ]


def _table(rows: Sequence[list[Any]]) -> dict[str, Any]:
    return {
        "name": "PrimaryResult",
        "columns": [{"name": name, "type": kind} for name, kind in ANSWER_COLUMNS],
        "rows": list(rows),
    }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    workspace: Workspace

    def do_POST(self) -> None:
        if not re.fullmatch(r"/v1/workspaces/[^/]+/query", self.path):
            self._send(404, _error("PathNotFound", "no such path"), {})
            return
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._send(401, _error("AuthorizationRequiredError", "no bearer token"), {})
            return
        length = int(self.headers.get("Content-Length", "0"))
        document = json.loads(self.rfile.read(length))
        status, body, headers = self.workspace.answer(str(document["query"]))
        self._send(status, body, headers)

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


class LogsQueryStandIn:
    """The stand-in served on 127.0.0.1 on a free port, in a thread, for as long as it is open."""

    def __init__(self, workspace: Workspace) -> None:
        handler = type("Handler", (_Handler,), {"workspace": workspace})
        self.workspace = workspace
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LogsQueryStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def workspace_of(records: Sequence[dict[str, object]], **limits: Any) -> Workspace:
    """A workspace holding joined LLM-log rows (the CSV export's columns): the LLM-log rows, and a
    gateway-log row for each call whose row names a subscription."""
    frame = pd.DataFrame(list(records))
    frame["TimeGenerated"] = pd.to_datetime(frame["TimeGenerated"], utc=True).dt.tz_convert(None)
    for name in ("PromptTokens", "CompletionTokens", "TotalTokens", "SequenceNumber"):
        frame[name] = pd.to_numeric(frame[name]).astype(np.int64)
    frame["IsStreamCompletion"] = frame["IsStreamCompletion"].astype(str).str.lower() == "true"
    frame["CorrelationId"] = frame["CorrelationId"].astype(str)
    gateway = frame[frame["ApimSubscriptionId"].astype(str) != ""][list(GATEWAY_COLUMNS)]
    return Workspace(frame[list(LLM_COLUMNS)].reset_index(drop=True), gateway.reset_index(drop=True), **limits)


def bearer_client(endpoint: str, **options: Any) -> Any:
    """A real ``LogsQueryClient`` for the stand-in: plain HTTP on loopback, with a fixed bearer token."""
    return LogsQueryClient(_Unused(), endpoint=endpoint, authentication_policy=_Bearer(), **options)


class _Unused:
    """A credential the client holds but never asks: the bearer policy below writes the header."""

    def get_token(self, *scopes: str, **options: Any) -> AccessToken:
        raise AssertionError("the stand-in's client never asks for a token")


class _Bearer(SansIOHTTPPolicy[Any, Any]):
    def on_request(self, request: Any) -> None:
        request.http_request.headers["Authorization"] = "Bearer local-stand-in"


def synthetic_day(
    day: date, calls: int, *, subscriptions: int = 1_000, models: int = 10, split_every: int = 10, seed: int = 7
) -> Workspace:
    """A workspace holding ``calls`` streamed calls on ``day``: every ``split_every``-th call split over
    two rows, every hundredth one without its gateway-log row (unattributed)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64(datetime(day.year, day.month, day.day), "ns")
    offsets = rng.integers(0, 86_400 * 10**9, calls, dtype=np.int64)
    call_ids = np.arange(calls, dtype=np.int64)
    split = call_ids[call_ids % split_every == 0]
    correlation = np.concatenate([call_ids, split])
    times = start + np.concatenate([offsets, offsets[split] + 2 * 10**9]).astype("timedelta64[ns]")
    prompt = rng.integers(10, 2_000, calls)
    completion = rng.integers(1, 1_000, calls)
    model = pd.Categorical.from_codes(
        rng.integers(0, models, calls), pd.Index([f"gpt-model-{m}" for m in range(models)])
    )
    llm = pd.DataFrame(
        {
            "TimeGenerated": times,
            "CorrelationId": correlation,
            "ModelName": np.concatenate([model, model[split]]),
            "DeploymentName": np.concatenate([model, model[split]]),
            "OperationName": pd.Categorical(["ChatCompletions_Create"] * len(correlation)),
            "PromptTokens": np.concatenate([prompt, prompt[split]]),
            "CompletionTokens": np.concatenate([completion, np.zeros(len(split), dtype=np.int64)]),
            "TotalTokens": np.concatenate([prompt + completion, prompt[split]]),
            "IsStreamCompletion": np.ones(len(correlation), dtype=bool),
            "SequenceNumber": np.concatenate([np.zeros(calls, dtype=np.int64), np.ones(len(split), dtype=np.int64)]),
        }
    )
    attributed = call_ids[call_ids % 100 != 99]
    gateway = pd.DataFrame(
        {
            "TimeGenerated": start + offsets[attributed].astype("timedelta64[ns]"),
            "CorrelationId": attributed,
            "ApimSubscriptionId": pd.Categorical.from_codes(
                attributed % subscriptions, pd.Index([f"team-{s:05d}" for s in range(subscriptions)])
            ),
        }
    )
    workspace = Workspace(llm, gateway)
    unattributed = call_ids % 100 == 99
    workspace.truth = {
        "calls": calls,
        "tokens": int((prompt + completion).sum()),
        "unattributed_tokens": int((prompt + completion)[unattributed].sum()),
    }
    return workspace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 10, 20), help="the day the calls are on")
    parser.add_argument("--calls", type=int, default=100_000, help="streamed calls on the day")
    parser.add_argument("--subscriptions", type=int, default=1_000)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--max-scan-rows", type=int, default=None, help="LLM-log rows a query may read (504 beyond)")


def run(args: argparse.Namespace) -> int:
    """Serve a synthetic day until stopped; print the endpoint (one JSON line) once it answers."""
    workspace = synthetic_day(args.day, args.calls, subscriptions=args.subscriptions, models=args.models)
    workspace.max_scan_rows = args.max_scan_rows
    with LogsQueryStandIn(workspace) as stand_in:
        ready = {"endpoint": stand_in.endpoint, "rows": len(workspace.llm), "truth": workspace.truth}
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        threading.Event().wait()
    return 0
