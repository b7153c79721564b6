"""The board's optional bearer token (``PODIUM_BOARD_TOKEN``): every request must carry it, as
``Authorization: Bearer TOKEN`` (scripts), or as the cookie a browser gets by opening a page once with
``?token=TOKEN`` (an EventSource cannot send headers)."""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "podium_board_token"


class TokenGate:
    def __init__(self, app: ASGIApp, token: str | None):
        self.app = app
        self.token = token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        bearer = headers.get("authorization", "")
        offered = [bearer[7:] if bearer.lower().startswith("bearer ") else None, _cookie(headers.get("cookie", ""))]
        if any(o is not None and self._matches(o) for o in offered):
            await self.app(scope, receive, send)
            return
        given = query.get("token")
        if given is not None and self._matches(given):
            if scope["path"].startswith("/api/"):
                await self.app(scope, receive, send)
                return
            rest = urlencode([(k, v) for k, v in parse_qsl(scope["query_string"].decode("latin-1")) if k != "token"])
            redirect = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
            redirect.set_cookie(COOKIE, given, httponly=True, samesite="strict", path="/")
            await redirect(scope, receive, send)
            return
        message = "this board needs its token: send Authorization: Bearer TOKEN, or open a page once with ?token=TOKEN"
        response: Response
        if scope["path"].startswith("/api/"):
            response = JSONResponse({"error": message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            response = PlainTextResponse(message, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def _matches(self, offered: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(offered.encode(), self.token.encode())


def _cookie(header: str) -> str | None:
    if not header:
        return None
    jar = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed cookie header is no token
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None
