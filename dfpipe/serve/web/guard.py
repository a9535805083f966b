"""Only this server's own page may drive the API: Host allow-list and same-origin writes.

A page on another site can make the browser send requests to 127.0.0.1 (a cross-site form
POST), and a name the attacker controls can be re-pointed at 127.0.0.1 (DNS rebinding, the
request then carries the attacker's name in ``Host``). So a request is answered only when its
``Host`` is one the server is bound to, a local name, or one named with ``--allowed-host``;
and a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` (or, without one,
``Referer``) names another host or scheme (``https://`` page, ``http://`` server: another
origin), or that the browser marks ``Sec-Fetch-Site: cross-site``, is refused. Clients that
send neither header (curl, scripts) are not browsers and pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, jsonify, request

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def host_name(value: str) -> str:
    """The host part of a ``Host`` header or URL netloc: no port, no brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value.rstrip(".")


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names requests may carry in ``Host``: the bound one, local names, and ``extra``."""
    names = {host_name(n) for n in (*LOCAL_NAMES, *extra) if n}
    if bound not in WILDCARDS:
        names.add(host_name(bound))
    return frozenset(names)


def host_allowed(name: str, allowed: frozenset[str], bound: str) -> bool:
    """Whether ``name`` may be served; bound to all interfaces, any IP literal is too (a
    rebinding attack always carries a DNS name, never an address)."""
    return name in allowed or (bound in WILDCARDS and is_ip(name))


def cross_origin() -> str | None:
    """The foreign origin of the current request, or None when it is same-origin or unknown."""
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return request.headers.get("Origin") or "another site"
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return None
    if source == "null":
        return "null"
    parts = urlsplit(source)
    same = (parts.scheme.lower() == request.scheme
            and parts.netloc.lower() == request.host.lower())
    return None if same else source


def install(app: Flask, bound: str, extra: Iterable[str] = ()) -> None:
    """Check every request's Host, and the origin of every state-changing one."""
    allowed = allowed_hosts(bound, extra)

    @app.before_request
    def guard() -> Any:
        name = host_name(request.host)
        if not host_allowed(name, allowed, bound):
            _count(app, "host")
            return jsonify({
                "error": f"this server does not answer to the host name {name[:100]!r}: use "
                         "the address it listens on, or start it with --allowed-host NAME",
                "status": 400}), 400
        if request.method in WRITES:
            foreign = cross_origin()
            if foreign is not None:
                _count(app, "cross_origin")
                return jsonify({
                    "error": f"cross-origin request refused (from {foreign[:100]}): use the "
                             "page this server serves, or a client that is not a browser",
                    "status": 403}), 403
        return None


def _count(app: Flask, reason: str) -> None:
    """A refusal for the app's metrics, when it keeps them."""
    metrics = getattr(app.extensions.get("dfpipe"), "metrics", None)
    if metrics is not None:
        metrics.refused(reason)
