"""The board's server-sent messages: whatever text a board holds (a supply request's note, an
address), it stays data and can start no field of its own, read as a browser reads the stream
(lines end at CR, LF or CRLF)."""
from __future__ import annotations

import re

from services.web import board_html, sse


def read(stream: str) -> list[dict[str, str]]:
    """Messages as EventSource parses them (WHATWG HTML, "event stream interpretation")."""
    messages, fields = [], {}
    for line in re.split(r"\r\n|\r|\n", stream):
        if not line:
            if fields:
                messages.append(fields)
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields[name] + "\n" + value if name == "data" and name in fields else value
    return messages


def test_text_with_line_breaks_stays_data_of_one_message():
    hostile = "rice\rid: 999\revent: end\n\ndata: <script>\r\n"
    [message] = read(sse.message(f"<p>{hostile}</p>", event="board", id=7))
    assert (message["event"], message["id"]) == ("board", "7")
    assert message["data"].replace("\n", "") == "<p>riceid: 999event: enddata: <script></p>"


def test_a_comment_and_the_id_fold_their_line_breaks():
    stream = sse.comment("alive 12\ndata: x") + sse.message("x", id="3\r4")
    assert read(stream) == [{"id": "3 4", "data": "x"}]


def test_the_board_escapes_markup_and_folds_line_breaks():
    assert board_html.esc('<b a="1">&\r\n') == "&lt;b a=&quot;1&quot;&gt;&amp;  "
