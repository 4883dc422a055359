"""Security headers on every response, set with Flask-Talisman, and a few of our own.

- Content-Security-Policy: everything from our own origin only; scripts may also carry
  the per-request nonce (`csp_nonce()` in templates); no inline script, style, event
  handler or plugin. With `PAYMENT_GATEWAY = "stripe"` the origin of `STRIPE_JS_URL` and
  Stripe's own hosts are allowed for Stripe.js, its frames and its calls, and nowhere else.
- Framing is refused (`frame-ancestors 'none'` and `X-Frame-Options: DENY`).
- `Referrer-Policy: strict-origin-when-cross-origin`; a Permissions-Policy that turns off
  the camera, microphone, geolocation, USB, payment handlers and the Topics API.
- In production (`ENV_NAME == "production"`) http is redirected to https and HSTS is
  sent (behind a proxy that ends TLS, the proxy must send `X-Forwarded-Proto: https`); in
  development and tests plain http keeps working and nothing redirects.
- `Cache-Control: no-store` on every answer made for somebody in particular: any page
  seen with a signed-in session, any API answer, any answer that sets or changes a cookie. Static
  files keep their caching.
- Every 405 carries `Allow`, whichever error handler rendered it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request, session
from flask_talisman import DENY, Talisman
from werkzeug.exceptions import MethodNotAllowed

SELF = "'self'"
#: Hosts Stripe.js needs beside its own script origin (Stripe's published CSP guidance).
STRIPE_FRAME_HOSTS = ("https://*.js.stripe.com", "https://hooks.stripe.com")
STRIPE_CONNECT_HOSTS = ("https://api.stripe.com",)
#: Where a form may lead: Stripe's onboarding for payouts redirects there after a post.
STRIPE_FORM_HOSTS = ("https://connect.stripe.com",)
PERMISSIONS_POLICY = {
    "camera": "()",
    "microphone": "()",
    "geolocation": "()",
    "usb": "()",
    "payment": "()",
    "browsing-topics": "()",
}
#: Endpoints whose answers are the same for everybody and may be cached.
PUBLIC_FILE_ENDPOINTS = ("static", "bootstrap.static")
API_PREFIX = "/api/"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(config: dict) -> dict[str, str]:
    """The policy for this configuration: self only, plus Stripe's hosts in Stripe mode."""
    policy = {
        "default-src": SELF,
        "script-src": SELF,
        "style-src": SELF,
        "img-src": f"{SELF} data:",  # Bootstrap draws its icons as data: SVG
        "font-src": SELF,
        "connect-src": SELF,
        "frame-src": "'none'",
        "object-src": "'none'",
        "base-uri": SELF,
        "form-action": SELF,
        "frame-ancestors": "'none'",
    }
    if config["PAYMENT_GATEWAY"] == "stripe":
        stripe = _origin(config["STRIPE_JS_URL"])
        policy["script-src"] = f"{SELF} {stripe}"
        policy["frame-src"] = " ".join((stripe, *STRIPE_FRAME_HOSTS))
        policy["connect-src"] = " ".join((SELF, stripe, *STRIPE_CONNECT_HOSTS))
        policy["form-action"] = " ".join((SELF, *STRIPE_FORM_HOSTS))
    return policy


def is_private_response(response: Response) -> bool:
    """True for an answer made for somebody in particular, which no cache may keep."""
    if request.endpoint in PUBLIC_FILE_ENDPOINTS:
        return False
    return (
        request.path.startswith(API_PREFIX)
        or "Authorization" in request.headers
        or "Set-Cookie" in response.headers
        or session.modified
        or session.get("_user_id") is not None
    )


def no_store_for_private(response: Response) -> Response:
    if is_private_response(response):
        response.headers["Cache-Control"] = "no-store"
    return response


def allow_on_405(response: Response) -> Response:
    """Every 405 names the methods the URL has (RFC 9110), also when an error page rendered it."""
    exc = request.routing_exception
    if response.status_code == 405 and "Allow" not in response.headers and isinstance(exc, MethodNotAllowed):
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods or ()))
    return response


def register_security(app: Flask) -> None:
    """Install the security headers on `app` (call once, from `create_app`)."""
    config = app.config
    production = config["ENV_NAME"] == "production"
    app.extensions["talisman"] = Talisman(
        app,
        force_https=production,
        strict_transport_security=production,
        frame_options=DENY,
        content_security_policy=content_security_policy(config),
        content_security_policy_nonce_in=["script-src"],
        referrer_policy="strict-origin-when-cross-origin",
        permissions_policy=PERMISSIONS_POLICY,
        # The session cookie's flags stay where Config sets them.
        session_cookie_secure=config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=config["SESSION_COOKIE_HTTPONLY"],
        session_cookie_samesite=config["SESSION_COOKIE_SAMESITE"],
    )
    app.after_request(no_store_for_private)
    app.after_request(allow_on_405)
