"""The pages' text in each language: one catalog per language, used by templates and scripts."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from exporter.exports.registry import ExportHandler, HandlerRegistry

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


def type_key(type_name: str, key: str) -> str:
    """The message key of an export type's own string ``key``."""
    return f"type.{type_name}.{key}"


def has_string(handler: ExportHandler[Any], key: str) -> bool:
    """Whether the type has its own string ``key`` (then in every language)."""
    return bool(handler.strings) and all(key in words for words in handler.strings.values())


def page_catalogs(handlers: HandlerRegistry) -> dict[str, dict[str, str]]:
    """Every language's messages for the pages: their own, and each type's strings."""
    for handler in handlers:
        if handler.strings and set(handler.strings) != set(LANGUAGES):
            raise ValueError(
                f"export handler {handler.name!r} has strings in {sorted(handler.strings)},"
                f" the pages are in {sorted(LANGUAGES)}"
            )
    return {
        language: catalog(language)
        | {
            type_key(handler.name, key): text
            for handler in handlers
            for key, text in handler.strings.get(language, {}).items()
        }
        for language in LANGUAGES
    }
