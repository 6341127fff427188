"""Splits whole amounts (tokens, minor currency units) in proportion to weights, summing exactly."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pandas as pd


def allocate(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` whole units in proportion to ``weights`` so the parts sum to it exactly.

    Largest-remainder method: each key gets the floor of its exact share, and the units left
    over go one each to the largest remainders, ties broken by key in ascending order.
    """
    weight_sum = sum(weights.values())
    if weight_sum <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError("allocation needs non-negative weights with a positive sum")
    shares: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, weight in weights.items():
        share, remainder = divmod(total * weight, weight_sum)
        shares[key] = share
        remainders.append((-remainder, key))
    left = total - sum(shares.values())
    for _, key in sorted(remainders)[:left]:
        shares[key] += 1
    return shares


def allocate_cost(amount: Decimal, weights: Mapping[str, int], minor_units: int) -> dict[str, Decimal]:
    """:func:`allocate` for money: ``amount`` in the currency's minor units, back as Decimals."""
    units = amount.scaleb(minor_units)
    if units != units.to_integral_value():
        raise ValueError(f"{amount} has more than {minor_units} decimal places")
    return {key: _money(part, minor_units) for key, part in allocate(int(units), weights).items()}


def _money(minor: int, minor_units: int) -> Decimal:
    return Decimal(int(minor)).scaleb(-minor_units)


def money_column(minor: pd.Series[Any], minor_units: int) -> pd.Series[Any]:
    """Whole minor units as exact Decimal amounts (an object column)."""
    return pd.Series([_money(v, minor_units) for v in minor.to_numpy()], index=minor.index, dtype=object)
