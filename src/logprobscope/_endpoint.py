"""The server a base URL points at: `server.address` and `server.port` of the telemetry."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

__all__ = ["server_address_port"]


class _URL(Protocol):
    # The SDK client's parsed `base_url` (host lower-cased, port None when implied).
    @property
    def scheme(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int | None: ...


def server_address_port(url: str | _URL) -> tuple[str | None, int | None]:
    """Host and port of a base URL; the scheme's port when none is written (443 for https).

    Takes the URL as a string or as the SDK client's parsed `base_url`. A URL without a
    host, or one that does not parse, gives (None, None).
    """
    try:
        if isinstance(url, str):
            parts = urlsplit(url)
            scheme, host, port = parts.scheme, parts.hostname, parts.port
        else:
            scheme, host, port = url.scheme, url.host, url.port
    except ValueError:  # a port that is not a number, an unbalanced IPv6 bracket
        return None, None
    if not host:
        return None, None
    return host, port or (443 if scheme == "https" else 80)
