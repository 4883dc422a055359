"""A campaign's story (Markdown rendered to safe HTML) and its slug (the URL name)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import or_, select

from crowdfund.campaigns.models import Campaign
from crowdfund.extensions import db

#: Slugs that would clash with fixed URLs under /campaigns/.
RESERVED_SLUGS = frozenset({"new", "edit", "studio", "preview", "search"})
MAX_SLUG_BASE = 80

_STORY_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "u", "s", "del", "ins", "sub", "sup", "mark", "small",
    "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "code", "pre", "kbd", "abbr",
    "a", "table", "thead", "tbody", "tr", "th", "td", "caption",
}  # fmt: skip


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark").enable("table")
    # A story's "# Heading" becomes <h2>: the page's only <h1> is the campaign title.
    default_open = md.renderer.rules.get("heading_open")
    default_close = md.renderer.rules.get("heading_close")

    def shift(default):
        def render(self, tokens, idx, options, env):
            token = tokens[idx]
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"
            if default is not None:
                return default(tokens, idx, options, env)
            return self.renderToken(tokens, idx, options, env)

        return render

    md.add_render_rule("heading_open", shift(default_open))
    md.add_render_rule("heading_close", shift(default_close))
    return md


def render_story(markdown: str) -> str:
    """Markdown (CommonMark + tables) to safe HTML.

    Normal formatting survives; links get rel="nofollow noopener" and may only be http(s)
    or mailto; images, scripts, styles, iframes, forms and event attributes are removed.
    """
    html = _markdown().render(markdown or "")
    return nh3.clean(
        html,
        tags=_STORY_TAGS,
        clean_content_tags={
            "script",
            "style",
            "iframe",
            "object",
            "embed",
            "noscript",
            "template",
            "textarea",
        },
        attributes={"a": {"href", "title"}, "abbr": {"title"}, "th": {"style"}, "td": {"style"}},
        filter_style_properties={"text-align"},
        link_rel="nofollow noopener",
        url_schemes={"http", "https", "mailto"},
        strip_comments=True,
    ).strip()


def slug_base(title: str) -> str:
    """Lower-case ASCII words joined by hyphens; '' when the title has no Latin letters."""
    ascii_text = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > MAX_SLUG_BASE:
        slug = slug[:MAX_SLUG_BASE].rsplit("-", 1)[0] or slug[:MAX_SLUG_BASE]
    return slug


def unique_slug(base: str, campaign_id: int) -> str:
    if not base or base in RESERVED_SLUGS:
        base = f"campaign-{campaign_id}" if not base else f"{base}-campaign"
    taken = set(
        db.session.scalars(
            select(Campaign.slug).where(
                Campaign.id != campaign_id, or_(Campaign.slug == base, Campaign.slug.like(f"{base}-%"))
            )
        )
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"
