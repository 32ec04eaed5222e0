"""Template tags that put the browser client on a page: ``{% load realtime %}``.

``{% realtime_client_url %}``
    The static URL of ``realtime.js`` (through the static files storage, so
    hashed names of ``ManifestStaticFilesStorage`` work), for an inline
    module::

        <script type="module">
          import { connect } from "{% realtime_client_url %}";
        </script>

    ``{% realtime_client_url as url %}`` stores it in a variable instead.

``{% realtime_client %}``
    An import map that names the client ``"django_realtime"``, so that
    modules served as static files, which cannot use template tags, import
    it by that name (``import { connect } from "django_realtime";``). Put
    it before the first module script. ``nonce`` adds the attribute a
    Content-Security-Policy asks of inline scripts::

        {% realtime_client nonce=request.csp_nonce %}
"""

from __future__ import annotations

import json

from django import template
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

__all__ = ["CLIENT_PATH", "IMPORT_NAME", "realtime_client", "realtime_client_url"]

#: Where the client is among the static files.
CLIENT_PATH = "django_realtime/realtime.js"
#: The module specifier that ``{% realtime_client %}`` maps to the client.
IMPORT_NAME = "django_realtime"

register = template.Library()

# JSON inside <script> must not close the element nor open a comment.
_SCRIPT_ESCAPES = {ord("<"): "\\u003C", ord(">"): "\\u003E", ord("&"): "\\u0026"}


@register.simple_tag
def realtime_client_url() -> str:
    """Return the static URL of ``realtime.js``."""
    return static(CLIENT_PATH)


@register.simple_tag
def realtime_client(nonce: str | None = None) -> SafeString:
    """Return an import map naming ``realtime.js`` ``"django_realtime"``."""
    imports = json.dumps({"imports": {IMPORT_NAME: static(CLIENT_PATH)}})
    body = SafeString(imports.translate(_SCRIPT_ESCAPES))
    if nonce:
        return format_html(
            '<script type="importmap" nonce="{}">{}</script>', nonce, body
        )
    return format_html('<script type="importmap">{}</script>', body)
