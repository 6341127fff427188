"""A report filter must name a subscription or cost center that exists, or the answer is 404, not an empty report."""

from __future__ import annotations

from collections.abc import Collection

from chargeback.billing.cost_centers import UNALLOCATED, CostCenterMap
from chargeback.domain.errors import NotFoundError
from chargeback.reports.model import Report


def require_known(
    report: Report,
    cost_center_map: CostCenterMap,
    *,
    subscription: str | None,
    cost_center: str | None,
    cost_centers: Collection[str] | None,
) -> None:
    """Raise ``NotFoundError`` for a filter that names nothing the report or today's map knows.

    A cost center is known when the report has lines for it or the map lists it (``unallocated``
    always is). A subscription is known when the report or the map places it in one of the cost
    centers the answer is cut to (``cost_centers``; None: any), so a team never learns whether
    another team's subscription exists. A known filter with no lines this month answers an empty
    report, as before.
    """
    lines = report.lines
    if cost_center is not None:
        known = set(lines["cost_center"].astype(str)) | {c.cost_center for c in cost_center_map.entries.values()}
        if cost_center not in known | {UNALLOCATED}:
            raise NotFoundError(
                f"no cost center {cost_center} in this report or the cost-center map", field="cost_center"
            )
    if subscription is not None:
        places = set(lines.loc[lines["subscription_id"] == subscription, "cost_center"].astype(str))
        if cost_center_map.is_mapped(subscription):
            places.add(cost_center_map.lookup(subscription).cost_center)
        if not places or (cost_centers is not None and not places & set(cost_centers)):
            raise NotFoundError(
                f"no subscription {subscription} in this report or the cost-center map"
                + ("" if cost_centers is None else " among the cost centers this answer covers"),
                field="subscription",
            )
