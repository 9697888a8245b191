"""Evidence packs on disk: JSON (the source of truth), Markdown and self-contained HTML.

The HTML has inline CSS only and a Content-Security-Policy that forbids scripts and every
network fetch, so it reads the same offline. Both templates autoescape all text.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from registry.errors import InvalidInput
from registry.reports.evidence_pack import EvidencePack


class PackFormat(StrEnum):
    """File formats of an evidence pack."""

    JSON = "json"
    MD = "md"
    HTML = "html"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _cell(value: Any) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    text = "-" if value is None or value == "" else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _quote(value: str) -> str:
    """A Markdown blockquote, so free text cannot open headings or tables of its own."""
    return "\n".join("> " + line for line in str(value).splitlines()) or "> "


HASH_GROUP = 16


def _hash(value: Any) -> Markup:
    """A hash as HTML that may break only between groups of 16 characters, never inside one.

    ``<wbr>`` adds no character, so the hash copies and searches whole.
    """
    if not value:
        return Markup('<span class="muted">not recorded</span>')
    text = str(value)
    groups = [escape(text[i : i + HASH_GROUP]) for i in range(0, len(text), HASH_GROUP)]
    return Markup('<code class="hash">') + Markup("<wbr>").join(groups) + Markup("</code>")


def _fenced(text: str, info: str = "") -> Markup:
    """A Markdown code block holding ``text`` verbatim: the fence is longer than any run of
    backticks inside, so the text cannot close it. Markdown shows code blocks literally."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return Markup(f"{fence}{info}\n{text.rstrip()}\n{fence}")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("registry.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        when=_when,
        num=_num,
        cell=_cell,
        quote=_quote,
        pretty=_pretty,
        compact=_compact,
        hash=_hash,
        fenced=_fenced,
    )
    return env


_ENV = _env()


def render(pack: EvidencePack, fmt: PackFormat | str) -> str:
    """The pack as text in ``fmt``."""
    kind = parse_format(fmt)
    if kind is PackFormat.JSON:
        return pack.model_dump_json(indent=2) + "\n"
    template = _ENV.get_template(f"evidence.{kind.value}.j2")
    return template.render(pack=pack, h=pack.header, card=pack.model_card).rstrip("\n") + "\n"


def parse_format(fmt: PackFormat | str) -> PackFormat:
    """Parse a format name; refuse anything but json, md and html."""
    try:
        return PackFormat(str(fmt).lower())
    except ValueError:
        raise InvalidInput(f"format: {fmt!r} must be one of json, md, html", field="format") from None


def pack_filename(pack: EvidencePack, fmt: PackFormat | str) -> str:
    """``<model>-v<version>-evidence.<ext>``."""
    return f"{pack.header.model}-v{pack.header.version}-evidence.{parse_format(fmt).value}"


def write_pack(pack: EvidencePack, out_dir: str | Path, fmt: PackFormat | str) -> Path:
    """Write the pack into ``out_dir`` (created if missing) through a temp file and a rename.

    Refuses an ``out_dir`` that is a file or cannot be written; nothing is left behind then.
    """
    text = render(pack, fmt)
    folder = Path(out_dir)
    target = folder / pack_filename(pack, fmt)
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"out: {folder} is not a folder", field="out")
    tmp = folder / f".{target.name}.{uuid.uuid4().hex}.tmp"
    created = False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8") as fh:
            created = True
            fh.write(text)
        os.replace(tmp, target)
        created = False
    except OSError as exc:
        raise InvalidInput(f"out: cannot write {target}: {exc.strerror or exc}", field="out") from None
    finally:
        if created:
            tmp.unlink(missing_ok=True)
    return target
