"""The report's output formats: Markdown, HTML and the CSV cells of runs.csv.

Every table, heading and paragraph comes as a block (`("h2", text)`, `("p", text)`,
`("table", DataFrame)`, `("img", path, caption)`), rendered by `to_markdown` and
`to_html`. Text from run records (a shared directory: anyone there can write any
field) is made inert in every format: HTML-escaped in report.html, escaped for
Markdown in report.md (`md_text`), neutralized for spreadsheets in runs.csv
(`csv_cell`).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

# a cell that reads as a number (with a unit suffix or a timing mark): right-aligned
NUMERIC = re.compile(r"^([+-]?[\d.,]+\s*[KMG%]?(\s*[‡§])?|–)$")


def right_aligned(df: pd.DataFrame) -> list[bool]:
    """Per column: every cell numeric (and not all '–'). Header and cells share it."""
    out = []
    for c in df.columns:
        cells = [str(v) for v in df[c]]
        out.append(all(NUMERIC.match(v) for v in cells) and any(v != "–" for v in cells))
    return out


def html_table(df: pd.DataFrame) -> str:
    align = ["r" if r else "l" for r in right_aligned(df)]
    head = "".join(f'<th class="{a}">{html.escape(str(c))}</th>' for c, a in zip(df.columns, align))
    body = "\n".join("<tr>" + "".join(f'<td class="{a}">{html.escape(str(v))}</td>'
                                       for v, a in zip(row, align)) + "</tr>"
                      for row in df.itertuples(index=False))
    return f'<table class="t">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


# Text in report.md comes from records in a shared directory: it is made inert. HTML is
# entity-escaped (no tag or entity survives), backslashes, backticks (code spans) and the
# table's cell separator are backslash-escaped, line breaks become spaces (a cell or
# heading stays on its line), and where brackets could form a link, an image or a link
# definition (`](`, `][`, `]:`), every bracket is escaped. Brackets elsewhere, as in our
# intervals "[0.1, 0.3]", stay as written.
MD_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "`": "\\`",
                            "|": "\\|", "\n": " ", "\r": " "})
MD_LINK = re.compile(r"\][(\[:]")


def md_text(text) -> str:
    """`text` as inert Markdown: shown as written, never interpreted as markup."""
    text = str(text).translate(MD_ESCAPES)
    if MD_LINK.search(text):
        text = text.replace("[", "\\[").replace("]", "\\]")
    return text


def to_markdown(blocks, out_dir: Path) -> str:
    parts = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"{'#' * int(kind[1])} {md_text(rest[0])}\n")
        elif kind == "p":
            parts.append(md_text(rest[0]) + "\n")
        elif kind == "table":
            df = rest[0]
            if df.empty:
                parts.append("_none_\n")
            else:
                # numbers stay as formatted (no re-parsing), aligned as in the HTML
                align = ["right" if r else "left" for r in right_aligned(df)]
                cells = df.map(lambda v: md_text(v) if isinstance(v, str) else v).rename(columns=md_text)
                parts.append(cells.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n")
        elif kind == "img":
            path, caption = rest
            parts.append(f"![{md_text(caption)}]({path.relative_to(out_dir).as_posix()})\n")
    return "\n".join(parts)


def to_html(blocks, title: str) -> str:
    body = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(rest[0])}</p>")
        elif kind == "table":
            df = rest[0]
            body.append(html_table(df) if not df.empty else "<p><em>none</em></p>")
        elif kind == "img":
            path, caption = rest
            data = base64.b64encode(path.read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(caption)}" '
                        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}'
                        f"</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
             "table.t{border-collapse:collapse;font-size:12px;margin:1em 0}"
             "table.t td,table.t th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}"
             "table.t th{background:#f3f3f3}"
             "table.t .r{text-align:right;white-space:nowrap}table.t .l{text-align:left}"
             "img{max-width:100%}figure{margin:1.5em 0}figcaption{font-size:12px;color:#555}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def csv_cell(value):
    """A runs.csv cell a spreadsheet shows as text, never evaluates (OWASP's CSV injection
    rule): text that starts with =, +, -, @, a tab or a carriage return gets a leading
    apostrophe. Numbers, including negative ones, stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
            return value          # "-0.5" is a number a spreadsheet reads as one
        except ValueError:
            return "'" + value
    return value
