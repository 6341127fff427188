"""Usage frames: the ledger's rows as a compact pandas frame, one row per day, subscription, model and deployment."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from chargeback.domain.usage import UsageRow

LEDGER_KEYS = ("day", "subscription_id", "model", "deployment")
LEDGER_COUNTERS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "unsplit_tokens",
    "total_tokens",
    "llm_log_tokens",
)
LEDGER_COLUMNS = LEDGER_KEYS + LEDGER_COUNTERS
"""The columns of a usage frame: one row per (UTC day, subscription, model, deployment)."""

LINE_KEYS = ("subscription_id", "model", "deployment")
"""What a priced line aggregates by: a subscription's usage of one deployment of one model."""


def usage_frame(rows: Iterable[UsageRow], *, chunk_rows: int = 250_000) -> pd.DataFrame:
    """Fold ledger rows into a usage frame, a chunk at a time, summing over operations."""
    chunks: list[pd.DataFrame] = []
    columns: dict[str, list[Any]] = {name: [] for name in LEDGER_COLUMNS}
    for row in rows:
        key, counters = row.key, row.counters
        columns["day"].append(key.day)
        columns["subscription_id"].append(key.subscription_id)
        columns["model"].append(key.model)
        columns["deployment"].append(key.deployment)
        for name in LEDGER_COUNTERS:
            columns[name].append(getattr(counters, name))
        if len(columns["day"]) >= chunk_rows:
            chunks.append(_fold(pd.DataFrame(columns)))
            columns = {name: [] for name in LEDGER_COLUMNS}
    if columns["day"] or not chunks:
        chunks.append(_fold(pd.DataFrame(columns)))
    return concat_usage_frames(chunks)


def concat_usage_frames(chunks: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Join usage frames built in parts into one normalised frame, summing repeated keys."""
    parts = [_fold(normalise_usage_frame(chunk)) for chunk in chunks]
    if not parts:
        return normalise_usage_frame(pd.DataFrame({name: [] for name in LEDGER_COLUMNS}))
    if len(parts) == 1:
        return normalise_usage_frame(parts[0])
    joined = pd.concat([part.astype(dict.fromkeys(LINE_KEYS, "str")) for part in parts], ignore_index=True)
    return normalise_usage_frame(_fold(joined))


def normalise_usage_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the usage columns typed: day as datetime64[s], keys categorical, counters int64.

    A frame already in that form is returned as it is, without a copy.
    """
    if "llm_log_tokens" not in frame.columns:
        # Frames written before the LLM logs were a usage source: every token came as an event.
        frame = frame.assign(llm_log_tokens=np.zeros(len(frame), dtype=np.int64))
    missing = [name for name in LEDGER_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"usage frame lacks columns {missing}")
    if _is_normal(frame):
        return frame
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    days = pd.DatetimeIndex(pd.to_datetime(frame["day"].to_numpy())) if len(frame) else pd.DatetimeIndex([])
    if days.tz is not None:
        days = days.tz_convert("UTC").tz_localize(None)
    if len(days) and bool((days != days.normalize()).any()):
        raise ValueError("usage frame days must be whole UTC days")
    out["day"] = days.as_unit("s").to_numpy()
    for name in LINE_KEYS:
        out[name] = pd.Categorical(frame[name].astype(str).to_numpy())
    for name in LEDGER_COUNTERS:
        values = frame[name].to_numpy()
        if values.dtype.kind not in "iu" and len(values):
            raise ValueError(f"usage frame column {name} must hold whole numbers")
        out[name] = values.astype(np.int64, copy=False)
    return out


def _is_normal(frame: pd.DataFrame) -> bool:
    return (
        isinstance(frame.index, pd.RangeIndex)
        and frame["day"].dtype == np.dtype("datetime64[s]")
        and all(isinstance(frame[name].dtype, pd.CategoricalDtype) for name in LINE_KEYS)
        and all(frame[name].dtype == np.int64 for name in LEDGER_COUNTERS)
    )


def _fold(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame.loc[:, list(LEDGER_COLUMNS)]
    return frame.groupby(list(LEDGER_KEYS), observed=True, sort=False)[list(LEDGER_COUNTERS)].sum().reset_index()
