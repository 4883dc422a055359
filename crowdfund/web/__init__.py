"""Shared web helpers: the id converter, error pages, template filters and input guards.

Nothing here knows a domain package; `crowdfund.create_app` registers the blueprints.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask, render_template, request
from markupsafe import Markup

from crowdfund.money import Money


def init_app(app: Flask) -> None:
    """Install what every page shares: the id converter, error pages, template helpers, input guards."""
    from crowdfund.web.converters import IdConverter
    from crowdfund.web.guards import register_input_guards

    # Before any rule is added: every `<int:…>` in a URL is a bounded id.
    app.url_map.converters["int"] = IdConverter
    register_error_pages(app)
    register_template_helpers(app)
    register_input_guards(app)


def register_error_pages(app: Flask) -> None:
    def render_error(status: int, title: str, message: str):
        if request.path.startswith("/api/"):
            return {"error": {"code": title.lower().replace(" ", "_"), "message": message}}, status
        return render_template("error.html", status=status, title=title, message=message), status

    @app.errorhandler(400)
    def bad_request(e):
        return render_error(
            400, "Bad request", getattr(e, "description", "") or "The request could not be understood."
        )

    @app.errorhandler(403)
    def forbidden(e):
        return render_error(403, "Forbidden", "You do not have permission to see this page.")

    @app.errorhandler(404)
    def not_found(e):
        return render_error(
            404, "Not found", "We could not find that page. It may have moved or never existed."
        )

    @app.errorhandler(405)
    def method_not_allowed(e):
        return render_error(405, "Method not allowed", "That action is not available here.")

    @app.errorhandler(413)
    def too_large(e):
        limit = app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
        return render_error(413, "Upload too large", f"Files can be at most {limit} MB.")

    @app.errorhandler(429)
    def too_many(e):
        return render_error(
            429, "Too many requests", "Too many attempts. Please wait a minute and try again."
        )

    @app.errorhandler(500)
    def server_error(e):
        return render_error(
            500, "Something went wrong", "An unexpected error happened. We have been told; please try again."
        )


def format_money(value: Money | None, with_code: bool = False) -> str:
    return "" if value is None else value.format(with_code=with_code)


def register_template_helpers(app: Flask) -> None:
    app.jinja_env.filters["money"] = format_money

    @app.template_filter("date")
    def format_date(value: datetime | None, fmt: str = "%d %b %Y") -> str:
        return value.strftime(fmt) if value else ""

    @app.template_filter("datetime")
    def format_datetime(value: datetime | None) -> Markup | str:
        if not value:
            return ""
        return Markup('<time datetime="{iso}">{text}</time>').format(
            iso=value.isoformat(), text=value.strftime("%d %b %Y %H:%M UTC")
        )

    @app.context_processor
    def inject_globals():
        return {"site_name": app.config["SITE_NAME"], "now": datetime.now(UTC)}
