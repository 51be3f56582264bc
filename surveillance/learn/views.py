"""The article index and the article pages (also printed as handouts by coordinators)."""

from __future__ import annotations

from flask import abort, render_template

from surveillance import education
from surveillance.learn import bp


@bp.get("")
def index() -> str:
    return render_template(
        "learn/index.html",
        stage_articles=education.by_stage(),
        topic_sections=education.by_topic_group(),
    )


@bp.get("/<slug>")
def article(slug: str) -> str:
    found = education.get(slug)
    if found is None:
        abort(404)
    related = [a for a in (education.get(s) for s in found.related) if a is not None]
    return render_template("learn/article.html", article=found, related=related)
