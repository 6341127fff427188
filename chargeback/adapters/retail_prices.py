"""Azure's public Retail Prices API: every page of a filtered query, retried, each request timed out.

``GET {endpoint}?api-version=2023-01-01-preview&currencyCode='USD'&$filter=...`` answers
``{"BillingCurrency", "Items": [...], "NextPageLink", "Count"}``, up to 100 items a page. The
next page is the ``NextPageLink`` (only followed to the endpoint's own scheme and host); a page
that comes back without one though it is full is followed by ``$skip``. Throttling (429) and
server errors (5xx), a timeout or a dropped connection are retried with exponential backoff,
waiting as long as a ``Retry-After`` asks (up to a bound). The API needs no credentials, and
numbers are read as ``Decimal``, never as floats.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from chargeback.adapters.retry_after import retry_after
from chargeback.domain.errors import PriceListError

DEFAULT_ENDPOINT = "https://prices.azure.com/api/retail/prices"
API_VERSION = "2023-01-01-preview"
PAGE_SIZE = 100
MAX_PAGES = 500
RETRIED_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "chargeback-prices/1"


class _Retry(Exception):
    """An attempt that is worth repeating, and how long the server asked to wait first."""

    def __init__(self, reason: str, wait: float | None) -> None:
        super().__init__(reason)
        self.wait = wait


class RetailPrices:
    """Reads filtered queries of one Retail Prices endpoint (Azure's, or a stand-in's)."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: float = 30.0,
        attempts: int = 6,
        backoff: float = 1.0,
        max_wait: float = 60.0,
    ) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PriceListError(f"the price list endpoint must be an http(s) URL, got {endpoint!r}")
        self._endpoint = endpoint
        self._origin = _origin(parts)
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._max_wait = max_wait

    def query_url(self, odata_filter: str, currency: str, skip: int = 0) -> str:
        """The first page's URL of a query; with ``skip``, the page after that many items."""
        params = [("api-version", API_VERSION), ("currencyCode", f"'{currency}'"), ("$filter", odata_filter)]
        if skip:
            params.append(("$skip", str(skip)))
        separator = "&" if "?" in self._endpoint else "?"
        return self._endpoint + separator + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)

    def items(self, odata_filter: str, currency: str) -> list[Mapping[str, Any]]:
        """Every item the query matches, across all its pages."""
        url = self.query_url(odata_filter, currency)
        items: list[Mapping[str, Any]] = []
        visited = {url}
        for _ in range(MAX_PAGES):
            page_items, link = self._page(url)
            items += page_items
            if link:
                url = self._followed(link)
                if url in visited:
                    raise PriceListError("the price list's NextPageLink leads back to a page already read")
            elif len(page_items) >= PAGE_SIZE:
                url = self.query_url(odata_filter, currency, skip=len(items))
            else:
                return items
            visited.add(url)
        raise PriceListError(f"the price list ran past {MAX_PAGES} pages")

    def _page(self, url: str) -> tuple[list[Mapping[str, Any]], str | None]:
        document = self._get(url)
        page_items = document.get("Items")
        if not isinstance(page_items, list) or not all(isinstance(item, Mapping) for item in page_items):
            raise PriceListError("a price list page has no list of Items")
        link = document.get("NextPageLink")
        if link is not None and not isinstance(link, str):
            raise PriceListError("a price list page's NextPageLink is not a URL")
        return page_items, link or None

    def _followed(self, link: str) -> str:
        parts = urllib.parse.urlsplit(link)
        try:
            same = _origin(parts) == self._origin
        except ValueError:  # a port that is not a number
            same = False
        if not same:
            raise PriceListError(f"the price list's NextPageLink leaves {self._origin[1]}: {parts.netloc or link!r}")
        return link

    def _get(self, url: str) -> Mapping[str, Any]:
        """One page, retried while the failure is worth retrying."""
        for attempt in range(1, self._attempts + 1):
            try:
                return self._fetch(url)
            except _Retry as retry:
                if attempt == self._attempts:
                    raise PriceListError(
                        f"the price list at {self._origin[1]} failed {attempt} times; last: {retry}"
                    ) from retry.__cause__
                wait = self._backoff * 2 ** (attempt - 1) if retry.wait is None else retry.wait
                time.sleep(min(wait, self._max_wait))
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch(self, url: str) -> Mapping[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": USER_AGENT})  # noqa: S310 - http(s) only, checked above
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 - http(s) only
                body = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in RETRIED_STATUS:
                raise _Retry(f"answered {exc.code}", retry_after(exc.headers.get("Retry-After"))) from exc
            raise PriceListError(f"the price list at {self._origin[1]} answered {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Retry(f"no answer ({type(exc).__name__})", None) from exc
        try:
            document = json.loads(body, parse_float=Decimal)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PriceListError(f"the price list at {self._origin[1]} answered something that is not JSON") from exc
        if not isinstance(document, Mapping):
            raise PriceListError(f"the price list at {self._origin[1]} answered JSON that is not an object")
        return document


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str, int]:
    """Scheme, host and port, the port as the scheme implies it when none is written: Azure's
    NextPageLink names ``prices.azure.com:443`` where the endpoint says ``prices.azure.com``."""
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default
