"""Rendering console pages: Jinja2 templates (autoescaped), the language, the CSRF token, headers."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context

from fhir_server import __version__

from . import clock, i18n
from .session import csrf_token, finish, viewer

ENV = Environment(loader=PackageLoader("fhir_server.console", "templates"), autoescape=select_autoescape(default=True))


@pass_context
def _localtime(ctx: Context, value: object, date_only: bool = False) -> str:
    """``{{ when|localtime }}``: a FHIR time in the console's time zone (``tz`` of the page)."""
    return clock.local(value, ctx["tz"], date_only=date_only)


ENV.filters["localtime"] = _localtime

#: console pages run no inline script and load nothing from elsewhere
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'"


def lang_of(request: Request) -> str:
    return i18n.language(request.cookies.get("console_lang"))


def zone_of(request: Request) -> clock.ZoneInfo:
    return clock.zone(request.app.state.fhir.settings.console_timezone)


def page(request: Request, template: str, code: int = 200, **context: Any) -> HTMLResponse:
    lang = lang_of(request)
    tz = zone_of(request)
    html = ENV.get_template(template).render(
        t=i18n.translator(lang),
        lang=lang,
        viewer=viewer(request),
        auth=request.app.state.fhir.settings.auth,
        console_on=request.app.state.fhir.settings.console,
        csrf=csrf_token(request),
        version=__version__,
        path=request.url.path,
        # the language switch comes back to the same page, query included
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        tz=tz,
        tzname=clock.abbreviation(tz),
        **context,
    )
    response = HTMLResponse(html, status_code=code, headers={"Content-Security-Policy": CSP})
    return finish(request, response)
