"""The example project's ``/metrics``: Prometheus's scrape, kept from the public.

A request may read the metrics if it comes from an address of
``settings.METRICS_ALLOWED_NETWORKS`` (where Prometheus scrapes from), or
from a logged-in staff user (someone looking in a browser). Any other
request gets the same 404 as a URL that does not exist, so the page does
not tell the public it is there.

The address is the client address the ASGI server reports
(``REMOTE_ADDR``). Behind a reverse proxy on the same host, that is the
proxy's address unless the server is told to trust the proxy's
``X-Forwarded-For`` (uvicorn's ``--proxy-headers``, daphne's
``--proxy-headers``): do not allow the proxy's own network then.
"""

import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound

from django_realtime.ops.metrics import metrics_view

__all__ = ["address_allowed", "metrics"]


def address_allowed(address: str, networks: Iterable[str]) -> bool:
    """Return whether ``address`` belongs to one of ``networks``.

    An IPv4 address a dual-stack server reports in its IPv6 form
    (``::ffff:10.1.2.3``) counts as the IPv4 address. Anything that is not
    an IP address (an empty ``REMOTE_ADDR``, a Unix socket's path) belongs
    to no network.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(network) for network in networks)


def metrics(request: HttpRequest) -> HttpResponse:
    """Answer with the metrics for staff and allowed networks, 404 for others."""
    user = getattr(request, "user", None)
    if (user is not None and user.is_staff) or address_allowed(
        request.META.get("REMOTE_ADDR", ""),
        settings.METRICS_ALLOWED_NETWORKS,  # type: ignore[misc]
    ):
        return metrics_view(request)
    return HttpResponseNotFound(
        "Not found.\n", content_type="text/plain; charset=utf-8"
    )
