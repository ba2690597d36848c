"""HTML pages (saved articles, exported notes) → a Document: the article's text by heading, its title,
date and keywords; never scripts, styles, navigation, forms or page furniture.

Parsed with selectolax (the Lexbor engine: a real HTML5 parser, so broken markup, entities and
implicit tags come out as a browser reads them, which regexes over tags do not). The text is taken
from ``<article>`` (the longest, if several), else ``<main>``, else the body; block elements
(paragraphs, list items, table cells, quotes, code) become paragraphs, headings start sections.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from memcli.text.markdown import Document, Section

_DROP = {
    *("script", "style", "noscript", "template", "nav", "aside", "footer", "form", "button", "select", "textarea"),
    *("iframe", "object", "embed", "svg", "canvas", "video", "audio", "picture", "img", "input", "label", "dialog", "menu"),
}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {
    *("p", "div", "li", "dd", "dt", "td", "th", "pre", "blockquote", "figcaption", "caption", "address", "section"),
    *("article", "main", "header", "tr", "table", "ul", "ol", "dl", "figure", "details", "summary", "hr"),
}
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "dialog"}


def _meta(tree: Any, *names: str) -> str | None:
    for name in names:
        for attr in ("property", "name", "itemprop"):
            node = tree.css_first(f'meta[{attr}="{name}"]')
            content = node.attributes.get("content") if node is not None else None
            if content and content.strip():
                return str(content).strip()
    return None


def _when(tree: Any) -> date | datetime | None:
    value = _meta(tree, "article:published_time", "datePublished", "date", "dc.date", "DC.date")
    if value is None:
        node = tree.css_first("time[datetime]")
        value = node.attributes.get("datetime") if node is not None else None
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            return date.fromisoformat(str(value).strip()[:10])
        except ValueError:
            return None


def _content_root(tree: Any) -> Any:
    articles = tree.css("article")
    if articles:
        return max(articles, key=lambda a: len(a.text(deep=True) or ""))
    return tree.css_first("main") or tree.css_first('[role="main"]') or tree.body or tree.root


def _dropped(node: Any) -> bool:
    if node.tag in _DROP:
        return True
    attrs = node.attributes
    if attrs.get("role") in _DROP_ROLES or attrs.get("aria-hidden") == "true" or "hidden" in attrs:
        return True
    return node.tag == "header" and node.parent is not None and node.parent.tag == "body"  # the site's header


def parse_html(text: str) -> Document:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(text)
    title_node = tree.css_first("title")
    title = _meta(tree, "og:title") or (" ".join(title_node.text().split()) if title_node is not None else "") or None
    keywords = _meta(tree, "keywords", "article:tag") or ""
    tags = tuple(dict.fromkeys(t.strip().replace(" ", "-") for t in keywords.split(",") if t.strip()))

    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    inline: list[str] = []

    def end_block() -> None:
        words = " ".join("".join(inline).split())
        inline.clear()
        if words and words != "-":  # "-": an empty list item
            paragraphs.append(words)

    def end_section() -> None:
        end_block()
        if paragraphs:
            sections.append(Section(tuple(h for _, h in path), "\n\n".join(paragraphs), len(sections) + 1))
        paragraphs.clear()

    # Iterative walk in document order (a recursive one overflows on deeply nested pages).
    stack: list[tuple[Any, bool]] = [(_content_root(tree), False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            end_block()
            continue
        tag = node.tag
        if tag == "-text":
            inline.append(node.text_content or "")
            continue
        if tag in ("-comment", "!doctype") or _dropped(node):
            continue
        if tag in _HEADINGS:
            end_section()
            level = _HEADINGS[tag]
            while path and path[-1][0] >= level:
                path.pop()
            heading = " ".join((node.text(deep=True) or "").split())
            if heading:
                path.append((level, heading))
            continue
        if tag == "pre":  # code keeps its lines
            end_block()
            code = (node.text(deep=True) or "").strip("\n")
            if code.strip():
                paragraphs.append(code)
            continue
        if tag == "br":
            end_block()
            continue
        block = tag in _BLOCKS
        if block:
            end_block()
            stack.append((node, True))
            if tag == "li":
                inline.append("- ")
        stack.extend((child, False) for child in reversed(list(node.iter(include_text=True))))
    end_section()
    if title is None and sections and sections[0].heading_path:
        title = sections[0].heading_path[0]
    return Document(title, tags, _when(tree), tuple(sections), {})
