"""The bench's table: its columns, a row of it, and the text of its cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

MB = 1024 * 1024

COLUMNS = (
    "what",
    "s",
    "download s",
    "rate",
    "p50 / p99 ms",
    "peak RSS MB",
    "loop lag ms",
    "ratio",
    "target",
    "met",
)


class Target(TypedDict):
    target: str
    met: str


NO_TARGET = Target(target="", met="")


@dataclass(frozen=True)
class Row:
    what: str
    seconds: float | None = None
    download_s: float | None = None
    rate: str = ""
    latency: str = ""
    rss: str = ""
    lag: str = ""
    ratio: str = ""
    target: str = ""
    met: str = ""

    def cells(self) -> list[str]:
        seconds, download = (
            "" if s is None else f"{s:.2f}" for s in (self.seconds, self.download_s)
        )
        return [
            self.what,
            seconds,
            download,
            self.rate,
            self.latency,
            self.rss,
            self.lag,
            self.ratio,
            self.target,
            self.met,
        ]


def mb_text(value: int) -> str:
    return f"{value / MB:.0f}"


def rate_text(per_s: float, unit: str) -> str:
    return f"{per_s:,.0f} {unit}/s"


def met_text(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "NO")


def lag_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def times_text(value: float | None, of: str) -> str:
    return "" if value is None else f"{value:.2f}x {of}"


def ratio_of(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def target_of(
    value: float | None, limit: float, *, most: bool, unit: str = "x", note: str = ""
) -> Target:
    """The target's text, and whether ``value`` is at most (or at least) ``limit``."""
    met = None if value is None else value <= limit if most else value >= limit
    return Target(target=f"{'≤' if most else '≥'} {limit}{unit}{note}", met=met_text(met))
