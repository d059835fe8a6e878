"""The pages' text in each language: one catalog per language, used by templates and scripts."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from aiohttp import web

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
LANGUAGE_COOKIE = "lang"


@cache
def catalog(language: str) -> dict[str, str]:
    """Every message of ``language`` by key (``locales/<language>.json``)."""
    text = resources.files("exporter.web").joinpath(f"locales/{language}.json").read_text("utf-8")
    messages: dict[str, str] = json.loads(text)
    return messages


def language_of(request: web.Request) -> str:
    """The language the visitor chose with the switch; Simplified Chinese until they do."""
    chosen = request.cookies.get(LANGUAGE_COOKIE, "")
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE
