"""The HTTP sessions of the server's own outbound calls: the SATUSEHAT sync and the subscriptions'
rest-hook deliveries, both from background workers that send one call per resource or event.

aiohttp, not httpx: ~0.33 ms of CPU per call against ~1.4 ms on this project's machine
(``python -m bench.satusehat_http``). Certificates are checked against the system's trust store
(or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), read when the session starts: where a hospital installs
its internal or TLS-inspecting proxy's CA. No cookies are kept between calls. aiohttp never reads
the environment itself (its ``trust_env`` looks up the proxy and ``~/.netrc`` on a thread for every
call): a caller that honours a proxy looks it up once with :func:`environment_proxy`.
"""

from __future__ import annotations

import ssl
import urllib.request
from urllib.parse import urlsplit

import aiohttp


def new_session(*, timeout: float | None = None, proxy: str | None = None, limit: int = 100) -> aiohttp.ClientSession:
    """A session (made inside the event loop that uses it); ``timeout``: each call in all, seconds
    (None: aiohttp's default, for a caller that bounds its calls itself)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=ssl.create_default_context()),
        timeout=aiohttp.client.DEFAULT_TIMEOUT if timeout is None else aiohttp.ClientTimeout(total=timeout),
        proxy=proxy,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``,
    as curl and httpx read them): hospital networks often reach the internet through one."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)
