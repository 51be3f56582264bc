"""The public /learn pages over HTTP: index, articles, links between them, print styles."""

from __future__ import annotations

import re
from html import escape

import pytest
from flask.testing import FlaskClient

from surveillance import education
from tests.test_education import elements

CHROMIUM = "/usr/bin/chromium"  # the system's browser: tests never download one


def get_page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def test_index_lists_stages_in_care_order_then_topics(client: FlaskClient) -> None:
    html = get_page(client, "/learn")
    assert "<h1>Learn about your care</h1>" in html
    positions = [html.index(escape(a.title)) for a in education.by_stage()]
    assert positions == sorted(positions), "stage guides follow the care order"
    last_stage = positions[-1]
    for group, articles in education.by_topic_group():
        heading = html.index(f">{escape(group.heading)}</h2>")
        assert heading > last_stage
        for article in articles:
            assert html.index(escape(article.title)) > heading
            assert f'href="/learn/{article.slug}"' in html
    assert education.DISCLAIMER in html


@pytest.mark.parametrize("article", education.all_articles(), ids=lambda a: a.slug)
def test_article_page_is_a_complete_handout(client: FlaskClient, article) -> None:  # type: ignore[no-untyped-def]
    html = get_page(client, f"/learn/{article.slug}")
    assert f'<h1 id="article-title">{escape(article.title)}</h1>' in html
    assert f"<title>{escape(article.title)} · Watchful</title>" in html
    assert escape(article.summary) in html
    assert article.html in html
    assert education.DISCLAIMER in html
    reviewed = article.reviewed_on
    assert f'<time datetime="{reviewed.isoformat()}">' in html
    assert f"{reviewed:%B} {reviewed.day}, {reviewed.year}</time>" in html
    assert "https://watchful.test/learn/" + article.slug in html  # the printed page's address


def test_pages_are_public_and_unknown_articles_are_404(client: FlaskClient) -> None:
    assert client.get("/learn/chemotherapy").status_code == 200  # no login, no token
    for path in ("/learn/no-such-guide", "/learn/Chemotherapy", "/learn/chemotherapy.md"):
        assert client.get(path).status_code == 404, path


def test_every_link_inside_the_articles_resolves(client: FlaskClient) -> None:
    internal: set[str] = set()
    for article in education.all_articles():
        for tag, attributes in elements(article.html):
            if tag != "a":
                continue
            href = attributes.get("href")
            assert href, f"{article.slug}: a link lost its address in sanitising"
            if href.startswith("/"):
                internal.add(href.split("#")[0])
            else:
                assert href.startswith("https://"), f"{article.slug}: {href}"
        internal.update(f"/learn/{slug}" for slug in article.related)
    assert len(internal) > 10
    for path in sorted(internal):
        assert client.get(path).status_code == 200, path


def test_pages_link_the_print_stylesheet_and_no_inline_code(client: FlaskClient) -> None:
    for path in ("/learn", "/learn/watchful-waiting"):
        html = get_page(client, path)
        assert '<link rel="stylesheet" href="/static/learn.css">' in html
        assert '<script src="/static/learn.js" defer></script>' in html
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
        assert " style=" not in html and "<style" not in html


def test_print_stylesheet_hides_navigation(client: FlaskClient) -> None:
    response = client.get("/static/learn.css")
    assert response.status_code == 200
    css = response.get_data(as_text=True)
    response.close()
    print_rules = css[css.index("@media print") :]
    hidden = print_rules[: print_rules.index("{ display: none !important; }")]
    for selector in ("nav", ".no-print", ".btn", ".learn-related"):
        assert re.search(rf"(^|\s|,){re.escape(selector)}\s*,?\s*$", hidden, re.M), selector
    assert ".print-only { display: block; }" in print_rules
