"""Short-lived, read-only links to single blobs: signed with the account key locally, a user delegation key in Azure."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from azure.storage.blob import BlobSasPermissions, BlobServiceClient, UserDelegationKey, generate_blob_sas

from chargeback.adapters.storage import translated

LINK_LIFETIME = timedelta(minutes=10)
"""How long a link works: long enough to start a download, short enough not to be worth sharing."""

CLOCK_SKEW = timedelta(minutes=5)
"""Links start this long in the past, so a storage clock slightly behind still accepts them."""

DELEGATION_KEY_LIFETIME = timedelta(hours=6)


class BlobLinks:
    """Signs read-only SAS links for one storage account; a delegation key is reused while it lasts."""

    def __init__(self, service: BlobServiceClient, lifetime: timedelta = LINK_LIFETIME) -> None:
        self._service = service
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._key: UserDelegationKey | None = None
        self._key_expiry = datetime.min.replace(tzinfo=UTC)

    def url(self, container: str, blob: str, *, filename: str, content_type: str) -> str:
        """A link that reads ``blob`` once as an attachment named ``filename``, for the next few minutes."""
        now = datetime.now(UTC)
        expiry = now + self._lifetime
        account_key = getattr(self._service.credential, "account_key", None)
        signature = generate_blob_sas(
            account_name=str(self._service.account_name),
            container_name=container,
            blob_name=blob,
            account_key=account_key,
            user_delegation_key=None if account_key else self._delegation_key(now, expiry),
            permission=BlobSasPermissions(read=True),
            start=now - CLOCK_SKEW,
            expiry=expiry,
            content_disposition=f'attachment; filename="{filename}"',
            content_type=content_type,
        )
        client = self._service.get_blob_client(container, blob)
        return f"{client.url}?{signature}"

    def _delegation_key(self, now: datetime, expiry: datetime) -> UserDelegationKey:
        """A user delegation key valid past ``expiry``; asks Entra-signed storage for a new one when needed."""
        with self._lock:
            if self._key is None or self._key_expiry < expiry:
                key_expiry = now + DELEGATION_KEY_LIFETIME
                with translated("get a user delegation key"):
                    self._key = self._service.get_user_delegation_key(now - CLOCK_SKEW, key_expiry)
                self._key_expiry = key_expiry
            return self._key
