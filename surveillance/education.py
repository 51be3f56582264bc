"""Patient education articles: Markdown files with front matter, rendered to safe HTML.

Plain Python (no Flask), so the /learn pages, the patient's page and scripts share one
loader. Articles live in ``surveillance/content/articles/<slug>.md``::

    ---
    slug: watchful-waiting
    title: Watchful waiting
    summary: One plain sentence for the index and the page description.
    stage: watchful_waiting          (or  topic: surgery)
    reviewed: 2026-11-27
    related: [biopsy-review, watchful-waiting-day-to-day]
    ---
    Markdown body (## headings and below; the title is the page's only h1).

The front matter is a deliberately small subset of YAML: one ``key: value`` per line, lists
only as ``[a, b]``, no quoting, no nesting. Anything else is an ``ArticleError`` naming the
file, so a typo fails the test suite instead of showing a half-rendered page.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

# The care stages, in the order a patient usually meets them. The keys are shared with the
# stage model: the patient's page asks ``for_stage(patient.stage)``.
STAGES: tuple[str, ...] = (
    "assessment",
    "watchful_waiting",
    "biopsy_review",
    "treatment_planning",
    "systemic_treatment",
    "local_treatment",
    "clinical_trial",
    "surveillance_ended",
)


@dataclass(frozen=True)
class TopicGroup:
    """A heading on the index and the topics listed under it, in reading order."""

    key: str
    heading: str
    topics: tuple[str, ...]


TOPIC_GROUPS: tuple[TopicGroup, ...] = (
    TopicGroup("day_to_day", "Living with watchful waiting", ("watchful_waiting_day_to_day",)),
    TopicGroup(
        "systemic",
        "Medicines that work through the whole body",
        (
            "somatostatin_analogues",
            "chemotherapy",
            "targeted_therapy",
            "radioligand_therapy",
            "biologic_therapy",
        ),
    ),
    TopicGroup(
        "local",
        "Treatments aimed at one part of the body",
        ("surgery", "external_beam_radiation", "liver_directed_therapy"),
    ),
    TopicGroup("research", "Research studies", ("clinical_trials",)),
)
TOPICS: tuple[str, ...] = tuple(topic for group in TOPIC_GROUPS for topic in group.topics)

# Every article carries this sentence (checked by the tests), so a printed handout does too.
DISCLAIMER = "This is general information, not medical advice."

ARTICLES_DIR = Path(str(resources.files("surveillance") / "content" / "articles"))

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
FRONT_MATTER_LINE = re.compile(r"(?P<key>[a-z_]+):(?:\s+(?P<value>.*))?")
FENCE = "---"

REQUIRED_FIELDS = ("slug", "title", "summary", "reviewed")
LIST_FIELDS = frozenset({"related"})
KNOWN_FIELDS = frozenset({*REQUIRED_FIELDS, "stage", "topic", *LIST_FIELDS})

EXTERNAL_REL = "noopener noreferrer"
ALLOWED_TAGS = frozenset(
    {"p", "h2", "h3", "h4", "ul", "ol", "li", "strong", "em", "a", "blockquote", "br", "hr"}
)
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"a": {"href", "title"}, "ol": {"start"}}
INTERNAL_LINK = re.compile(r"/learn(?:/[a-z0-9]+(?:-[a-z0-9]+)*)?(?:#[a-z0-9-]+)?")


class ArticleError(ValueError):
    """An article file breaks the format; the message names the file and the problem."""


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    summary: str
    stage: str | None
    topic: str | None
    reviewed_on: date
    related: tuple[str, ...]
    markdown: str
    html: str

    @property
    def plain_text(self) -> str:
        """The rendered body as reading text: what a patient reads, without markup."""
        return plain_text(self.html)


# --- Front matter -----------------------------------------------------------------------------

FrontMatter = dict[str, str | tuple[str, ...]]


def parse_front_matter(text: str, source: str = "<article>") -> tuple[FrontMatter, str]:
    """Split ``text`` into its front matter and Markdown body. Strict: see the module doc."""
    lines = text.splitlines()
    if not lines or lines[0].rstrip() != FENCE:
        raise ArticleError(f"{source}: must start with a '---' line")
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.rstrip() == FENCE)
    except StopIteration:
        raise ArticleError(f"{source}: front matter has no closing '---' line") from None
    fields: FrontMatter = {}
    for number, line in enumerate(lines[1:end], start=2):
        key, value = _parse_line(line, f"{source}, line {number}")
        if key in fields:
            raise ArticleError(f"{source}, line {number}: '{key}' appears twice")
        fields[key] = value
    return fields, "\n".join(lines[end + 1 :]).strip() + "\n"


def _parse_line(line: str, where: str) -> tuple[str, str | tuple[str, ...]]:
    match = FRONT_MATTER_LINE.fullmatch(line.rstrip())
    if not match:
        raise ArticleError(f"{where}: expected 'key: value', got {line!r}")
    key, value = match["key"], (match["value"] or "").strip()
    if not value:
        raise ArticleError(f"{where}: '{key}' has no value")
    if value[0] in "\"'":
        raise ArticleError(f"{where}: '{key}' is quoted; write the value without quotes")
    if value.startswith("[") != value.endswith("]"):
        raise ArticleError(f"{where}: '{key}' has an unclosed list")
    if not value.startswith("["):
        return key, value
    inner = value[1:-1].strip()
    if not inner:
        return key, ()
    items = tuple(item.strip() for item in inner.split(","))
    if any(not item for item in items):
        raise ArticleError(f"{where}: '{key}' has an empty list item")
    return key, items


# --- Validation -------------------------------------------------------------------------------


def article_from_text(text: str, source: str, expected_slug: str | None = None) -> Article:
    """Build one article from a file's text; ``expected_slug`` is the file's name."""
    fields, body = parse_front_matter(text, source)
    _check_fields(fields, source)
    slug = _scalar(fields, "slug", source)
    if not SLUG.fullmatch(slug):
        raise ArticleError(f"{source}: slug {slug!r} must be lowercase words joined by '-'")
    if expected_slug is not None and slug != expected_slug:
        raise ArticleError(f"{source}: slug {slug!r} must match the file name {expected_slug!r}")
    stage, topic = fields.get("stage"), fields.get("topic")
    if (stage is None) == (topic is None):
        raise ArticleError(f"{source}: give exactly one of 'stage' or 'topic'")
    if stage is not None and stage not in STAGES:
        raise ArticleError(f"{source}: unknown stage {stage!r}; one of {', '.join(STAGES)}")
    if topic is not None and topic not in TOPICS:
        raise ArticleError(f"{source}: unknown topic {topic!r}; one of {', '.join(TOPICS)}")
    related = _related(fields, slug, source)
    if not body.strip():
        raise ArticleError(f"{source}: the article has no body")
    return Article(
        slug=slug,
        title=_scalar(fields, "title", source),
        summary=_scalar(fields, "summary", source),
        stage=_scalar(fields, "stage", source) if stage is not None else None,
        topic=_scalar(fields, "topic", source) if topic is not None else None,
        reviewed_on=_reviewed(fields, source),
        related=related,
        markdown=body,
        html=render(body, source),
    )


def _check_fields(fields: Mapping[str, object], source: str) -> None:
    unknown = sorted(set(fields) - KNOWN_FIELDS)
    if unknown:
        raise ArticleError(f"{source}: unknown field(s) {', '.join(unknown)}")
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        raise ArticleError(f"{source}: missing field(s) {', '.join(missing)}")
    for name, value in fields.items():
        if (name in LIST_FIELDS) != isinstance(value, tuple):
            kind = "a [list]" if name in LIST_FIELDS else "a single value"
            raise ArticleError(f"{source}: '{name}' must be {kind}")


def _scalar(fields: FrontMatter, name: str, source: str) -> str:
    value = fields[name]
    if not isinstance(value, str):  # guarded by _check_fields; keeps the type checker honest
        raise ArticleError(f"{source}: '{name}' must be a single value")
    return value


def _reviewed(fields: FrontMatter, source: str) -> date:
    value = _scalar(fields, "reviewed", source)
    try:
        if not ISO_DATE.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ArticleError(f"{source}: reviewed {value!r} is not a date like 2026-01-31") from None


def _related(fields: FrontMatter, slug: str, source: str) -> tuple[str, ...]:
    related = fields.get("related", ())
    assert isinstance(related, tuple)  # guarded by _check_fields
    for item in related:
        if not SLUG.fullmatch(item):
            raise ArticleError(f"{source}: related slug {item!r} is not a valid slug")
    if slug in related:
        raise ArticleError(f"{source}: an article cannot be related to itself")
    if len(set(related)) != len(related):
        raise ArticleError(f"{source}: related lists a slug twice")
    return related


# --- Rendering and sanitising -----------------------------------------------------------------


def _link_open(
    renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """External links open without handing this page (or its URL) to the other site."""
    token = tokens[idx]
    if _is_external(str(token.attrGet("href") or "")):
        token.attrSet("rel", EXTERNAL_REL)
    return renderer.renderToken(tokens, idx, options, env)


def _markdown() -> MarkdownIt:
    # CommonMark with raw HTML off: Markdown can only produce the tags it defines, and the
    # sanitiser below still checks the result (defence in depth).
    md = MarkdownIt("commonmark", {"html": False})
    md.add_render_rule("link_open", _link_open)
    return md


_MD = _markdown()


def render(markdown: str, source: str = "<article>") -> str:
    """Markdown → sanitised HTML. A level-1 heading is refused: the title is the page's h1."""
    tokens = _MD.parse(markdown)
    if any(token.type == "heading_open" and token.tag == "h1" for token in tokens):
        raise ArticleError(f"{source}: use '##' headings in the body; the title is the h1")
    return sanitise(_MD.renderer.render(tokens, _MD.options, {}))


def sanitise(html: str) -> str:
    """Keep only the tags and attributes articles need; links only to /learn pages or https."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        tag_attribute_values={"a": {"rel": {EXTERNAL_REL}}},
        attribute_filter=_filter_attribute,
        url_schemes={"https"},
        link_rel=None,  # rel is added by the renderer, and only on external links
        strip_comments=True,
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        return value if _is_external(value) or INTERNAL_LINK.fullmatch(value) else None
    if tag == "ol" and attribute == "start":
        return value if value.isdigit() else None
    return value


def _is_external(href: str) -> bool:
    parts = urlsplit(href)
    return parts.scheme == "https" and bool(parts.hostname)


class _TextExtractor(HTMLParser):
    BLOCKS = frozenset({"p", "h2", "h3", "h4", "li", "blockquote", "br", "hr", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        # As in a browser, a line break inside a paragraph is just a space.
        self.parts.append(" ".join(data.split("\n")))


def plain_text(html: str) -> str:
    """Readable text of rendered HTML: one block per line, markup and entities resolved."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    return "\n".join(line for line in lines if line)


# --- The library ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Library:
    articles: tuple[Article, ...]

    @functools.cached_property
    def by_slug(self) -> dict[str, Article]:
        return {article.slug: article for article in self.articles}


def load_articles(directory: Path) -> Library:
    """Read and check every ``*.md`` in ``directory``; cross-checks slugs, stages, topics."""
    articles = [
        article_from_text(path.read_text(encoding="utf-8"), path.name, expected_slug=path.stem)
        for path in sorted(directory.glob("*.md"))
    ]
    _check_unique(articles, "stage", "stage")
    _check_unique(articles, "topic", "topic")
    slugs = {article.slug for article in articles}
    for article in articles:
        missing = [slug for slug in article.related if slug not in slugs]
        if missing:
            raise ArticleError(f"{article.slug}.md: related article(s) not found: {missing}")
    return Library(tuple(articles))


def _check_unique(articles: Iterable[Article], attribute: str, label: str) -> None:
    seen: dict[str, str] = {}
    for article in articles:
        key = getattr(article, attribute)
        if key is None:
            continue
        if key in seen:
            raise ArticleError(f"{article.slug}.md: {label} {key!r} already has {seen[key]}.md")
        seen[key] = article.slug


@functools.cache
def library() -> Library:
    """The packaged articles, read once per process (they only change with a release)."""
    return load_articles(ARTICLES_DIR)


def all_articles() -> tuple[Article, ...]:
    return library().articles


def get(slug: str) -> Article | None:
    return library().by_slug.get(slug)


def for_stage(stage: str) -> Article:
    """The article that explains ``stage`` (a stage key, or a str enum whose value is one)."""
    key = str(getattr(stage, "value", stage))
    for article in library().articles:
        if article.stage == key:
            return article
    raise LookupError(f"no article for stage {key!r}")


def by_stage() -> tuple[Article, ...]:
    """The stage articles in care order, for the index (stages without one are skipped)."""
    position = {stage: index for index, stage in enumerate(STAGES)}
    staged = [article for article in library().articles if article.stage is not None]
    return tuple(sorted(staged, key=lambda article: position[str(article.stage)]))


def by_topic_group() -> tuple[tuple[TopicGroup, tuple[Article, ...]], ...]:
    """The topic articles under their index headings, each group in reading order."""
    by_topic = {a.topic: a for a in library().articles if a.topic is not None}
    sections = []
    for group in TOPIC_GROUPS:
        articles = tuple(by_topic[topic] for topic in group.topics if topic in by_topic)
        if articles:
            sections.append((group, articles))
    return tuple(sections)
