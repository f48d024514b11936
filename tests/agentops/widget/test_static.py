"""widget.js stays small: it loads on every page of the host site."""

from __future__ import annotations

import gzip
from pathlib import Path

import agentops.widget

WIDGET_JS = Path(agentops.widget.__file__).parent / "static" / "widget.js"


def test_it_keeps_widget_js_under_15_kb_gzipped():
    assert len(gzip.compress(WIDGET_JS.read_bytes(), 9)) <= 15 * 1024


def test_it_never_puts_untrusted_text_in_the_page_as_html():
    frame_js = (WIDGET_JS.parent / "widget" / "frame.js").read_text()
    for source in (WIDGET_JS.read_text(), frame_js):
        assert "innerHTML" not in source and "insertAdjacentHTML" not in source
        assert "document.write" not in source
