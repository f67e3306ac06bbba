"""Test peer: a proxy.py plugin that logs every proxied request and keeps traffic on loopback.

Loaded by ``tests/support/proxy.py`` as ``--plugins proxy_connect_log.ConnectLogPlugin``
(this directory is put on ``PYTHONPATH``).  Each request the proxy is about to forward is
appended as one JSON line ``{"method": "CONNECT", "host": "127.0.0.1", "port": 40123}`` to
the file named by ``ZENWS_PROXY_LOG``, so a test can assert its WebSocket really went
through the proxy.  Upstream hosts other than loopback are refused.
"""

from __future__ import annotations

import json
import os
from typing import Any

from proxy.http.exception import HttpRequestRejected
from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


class ConnectLogPlugin(HttpProxyBasePlugin):
    """Append one JSON line per proxied request; reject non-loopback upstreams (403)."""

    def before_upstream_connection(self, request: HttpParser) -> HttpParser | None:
        host = (request.host or b"").decode("ascii", "replace")
        method = (request.method or b"").decode("ascii", "replace")
        record: dict[str, Any] = {"method": method, "host": host, "port": request.port}
        allowed = host in _LOOPBACK or host.startswith("127.")
        record["allowed"] = allowed
        path = os.environ.get("ZENWS_PROXY_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        if not allowed:
            raise HttpRequestRejected(status_code=403, reason=b"loopback only")
        return request
