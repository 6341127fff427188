"""A stand-in for Azure's Retail Prices API on 127.0.0.1, with the answers' real shape and injected faults.

It serves a catalogue of items the way ``prices.azure.com/api/retail/prices`` does: the query's
``$filter`` (``serviceName``, ``productName``, ``type``, ``armRegionName`` equalities joined by
``and``) and ``currencyCode`` select items, 100 a page, and each page that is not the last
carries a ``NextPageLink`` to the same query with a larger ``$skip``. Faults are queued: each
request first takes the next fault, if any (a status with headers, a page whose link is left
out, or a delay longer than the client waits).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PAGE = 100
_CLAUSE = re.compile(r"^(\w+) eq '((?:[^']|'')*)'$")
_FILTERED = {"serviceName", "productName", "type", "armRegionName"}


@dataclass(frozen=True)
class Fault:
    """What the next request gets instead of its page: a status, no NextPageLink, or a stall."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    drop_link: bool = False
    stall_seconds: float = 0.0


@dataclass(frozen=True)
class Seen:
    """One request the stand-in received: its query and when."""

    params: dict[str, str]
    at: float


def item(
    meter: str,
    price: str,
    *,
    unit: str = "1K",
    product: str = "Azure OpenAI",
    region: str = "eastus2",
    currency: str = "USD",
    effective: str = "2024-10-01T00:00:00Z",
    price_type: str = "Consumption",
    sku: str | None = None,
    meter_id: str | None = None,
) -> dict[str, Any]:
    """A price-list item with every field Azure sends, its price exact."""
    sku_name = sku if sku is not None else meter.removesuffix(" Tokens")
    return {
        "currencyCode": currency,
        "tierMinimumUnits": Decimal("0.0"),
        "retailPrice": Decimal(price),
        "unitPrice": Decimal(price),
        "armRegionName": region,
        "location": "US East 2",
        "effectiveStartDate": effective,
        "meterId": meter_id or f"meter-{abs(hash((meter, region))) % 10**8:08d}",
        "meterName": meter,
        "productId": "DZH318Z08M22",
        "skuId": "DZH318Z08M22/00" + str(abs(hash(sku_name)) % 100),
        "productName": product,
        "skuName": sku_name,
        "serviceName": "Foundry Models",
        "serviceId": "DZH3180HX10K",
        "serviceFamily": "AI + Machine Learning",
        "unitOfMeasure": unit,
        "type": price_type,
        "isPrimaryMeterRegion": True,
        "armSkuName": "",
    }


class RetailPricesStandIn:
    """Serves ``catalogue`` on a free loopback port until closed."""

    def __init__(self, catalogue: Sequence[dict[str, Any]], faults: Sequence[Fault] = ()) -> None:
        self.catalogue = list(catalogue)
        self.faults = list(faults)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/retail/prices"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = stand_in.answer(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query, keep_blank_values=True))
        with self._lock:
            self.seen.append(Seen(params, time.monotonic()))
            fault = self.faults.pop(0) if self.faults else Fault()
        if fault.stall_seconds:
            time.sleep(fault.stall_seconds)
        if fault.status:
            return fault.status, fault.headers, b'{"error": "injected"}'
        try:
            page = self.page(params, drop_link=fault.drop_link)
        except ValueError as exc:
            return 400, {"Content-Type": "application/json"}, json.dumps({"Error": str(exc)}).encode()
        return 200, {"Content-Type": "application/json; charset=utf-8"}, _json(page).encode()

    def page(self, params: dict[str, str], *, drop_link: bool) -> dict[str, Any]:
        wanted = _clauses(params.get("$filter", ""))
        currency = params.get("currencyCode", "'USD'").strip("'")
        matching = [
            entry
            for entry in self.catalogue
            if entry["currencyCode"] == currency and all(entry[name] == value for name, value in wanted.items())
        ]
        skip = int(params.get("$skip", "0"))
        items = matching[skip : skip + PAGE]
        link = None
        if skip + PAGE < len(matching) and not drop_link:
            query = {**params, "$skip": str(skip + PAGE)}
            link = self.url + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        return {
            "BillingCurrency": currency,
            "CustomerEntityId": "Default",
            "CustomerEntityType": "Retail",
            "Items": items,
            "NextPageLink": link,
            "Count": len(items),
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @contextmanager
    def running(self) -> Iterator[RetailPricesStandIn]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.close()
            thread.join()


def _json(document: dict[str, Any]) -> str:
    """JSON with every Decimal written as the number it is, as Azure writes prices (never via float)."""
    marked = json.dumps(document, default=lambda value: f"\u0000{value}\u0000")
    return re.sub(r'"\\u0000([^"\\]*)\\u0000"', r"\1", marked)


def _clauses(odata: str) -> dict[str, str]:
    """The ``name eq 'value'`` clauses of a ``$filter``; anything else is refused, as Azure would."""
    found: dict[str, str] = {}
    for clause in odata.split(" and ") if odata else []:
        match = _CLAUSE.match(clause.strip())
        if match is None or match.group(1) not in _FILTERED:
            raise ValueError(f"the stand-in does not understand the filter clause {clause!r}")
        found[match.group(1)] = match.group(2).replace("''", "'")
    return found
