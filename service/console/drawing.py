"""Pictures for the console, drawn on the server as SVG: a decision's lineage as a graph, and figures over time.

Each drawing is plain SVG markup that scales to its container (a ``viewBox``, width 100%), so a page never
scrolls sideways, and needs no script. Every drawn node and point carries what it shows in ``data-``
attributes (its kind and IRI, or arm, time, estimate and interval), so that what a page draws can be read
back and checked against the API. All text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from markupsafe import Markup, escape

PALETTE = ("#1f5fa8", "#c2410c", "#15803d", "#7e22ce", "#a16207", "#0f766e")  # arm colours, contrast >= 4.5:1
INK, MUTED, RULE = "#1f2937", "#4b5563", "#d1d5db"


@dataclass(frozen=True)
class Node:
    """One thing in a decision's lineage."""

    kind: str  # decision | consent | profile | event | knowledge | policy | model | arm | shown | candidate | held
    iri: str  # what it is (an IRI, or a label where the thing has none)
    label: str
    detail: str = ""


@dataclass
class Lineage:
    """A decision and what it used (left), how it was decided (middle) and what it gave (right)."""

    decision: Node
    used: list[Node] = field(default_factory=list)
    how: list[Node] = field(default_factory=list)
    gave: list[Node] = field(default_factory=list)


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _node(node: Node, x: float, y: float, width: float, height: float) -> str:
    fill = {
        "decision": "#e0ecfb",
        "consent": "#ecfdf5",
        "event": "#fef9c3",
        "knowledge": "#f3f4f6",
        "profile": "#f5f3ff",
        "shown": "#dcfce7",
        "held": "#fee2e2",
    }.get(node.kind, "#ffffff")
    detail = (
        f'<text x="{x + 8:.0f}" y="{y + 34:.0f}" font-size="11" fill="{MUTED}">{escape(_clip(node.detail, 44))}</text>'
        if node.detail
        else ""
    )
    return (
        f'<g class="node" data-kind="{escape(node.kind)}" data-iri="{escape(node.iri)}" data-label="{escape(node.label)}"'
        f' data-detail="{escape(node.detail)}"><title>{escape(node.iri)}</title>'
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{width:.0f}" height="{height:.0f}" rx="6" fill="{fill}"'
        f' stroke="{MUTED}" stroke-width="1"/>'
        f'<text x="{x + 8:.0f}" y="{y + 18:.0f}" font-size="12" font-weight="600" fill="{INK}">'
        f"{escape(node.kind)}: {escape(_clip(node.label, 36))}</text>{detail}</g>"
    )


def lineage_svg(lineage: Lineage) -> Markup:
    """The lineage in three columns: what the decision used (left), what decided it, above the decision (middle),
    and its candidates (right); each thing has an edge to the decision."""
    width, column, box_w, box_h, gap, top = 1200, 400, 320, 44, 12, 40
    step = box_h + gap
    xs = (20, 20 + column, 20 + 2 * column)
    decision_y = top + len(lineage.how) * step
    rows = max(len(lineage.used), len(lineage.how) + 1, len(lineage.gave), 1)
    height = top + rows * step + 8
    left_in, right_in, top_in = (
        (xs[1], decision_y + box_h / 2),
        (xs[1] + box_w, decision_y + box_h / 2),
        (
            xs[1] + box_w / 2,
            decision_y,
        ),
    )
    edges: list[str] = []
    boxes: list[str] = []
    for nodes, x, (ex, ey), side in (
        (lineage.used, xs[0], left_in, "right"),
        (lineage.how, xs[1], top_in, "bottom"),
        (lineage.gave, xs[2], right_in, "left"),
    ):
        for i, node in enumerate(nodes):
            y = top + i * step
            sx, sy = {
                "right": (x + box_w, y + box_h / 2),
                "bottom": (x + box_w / 2, y + box_h),
                "left": (x, y + box_h / 2),
            }[side]
            edges.append(
                f'<line x1="{sx:.0f}" y1="{sy:.0f}" x2="{ex:.0f}" y2="{ey:.0f}" stroke="{RULE}" stroke-width="1.5"/>'
            )
            boxes.append(_node(node, x, y, box_w, box_h))
    boxes.append(_node(lineage.decision, xs[1], decision_y, box_w, box_h))
    heading = f'font-size="13" font-weight="600" fill="{INK}"'
    return Markup(
        f'<svg class="lineage" role="img" aria-label="Lineage of decision {escape(lineage.decision.label)}"'
        f' viewBox="0 0 {width} {height}" width="100%" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{xs[0]}" y="24" {heading}>used</text><text x="{xs[1]}" y="24" {heading}>decided by</text>'
        f'<text x="{xs[2]}" y="24" {heading}>candidates, shown and held back</text>'
        + "".join(edges)
        + "".join(boxes)
        + "</svg>"
    )


@dataclass(frozen=True)
class Point:
    at: datetime
    estimate: float
    lower: float | None = None
    upper: float | None = None
    now: bool = False  # computed for this page, not read from a record


@dataclass
class Series:
    name: str  # an arm
    points: list[Point]


def _legend(names: Sequence[str], right_edge: float) -> str:
    """A colour key for the series, right-aligned on the title's line, in the order and colours they are drawn."""
    keys = []
    for index, name in enumerate(names):
        x = right_edge - (len(names) - index) * 110
        keys.append(
            f'<rect x="{x}" y="7" width="10" height="10" fill="{PALETTE[index % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="16" font-size="11" fill="{INK}">{escape(_clip(name, 14))}</text>'
        )
    return "".join(keys)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= step * m)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def series_svg(
    title: str, series: Sequence[Series], *, unit: str = "", marks: Sequence[tuple[datetime, str]] = ()
) -> Markup:
    """Each series as a line over time, with its interval as a band and each point marked; ``marks`` are moments
    drawn as dashed vertical lines with a label (a rollback)."""
    width, height, left, right, top, bottom = 560, 260, 56, 16, 28, 40
    points = [p for s in series for p in s.points]
    label = f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%"'
    if not points:
        return Markup(
            f'{label} xmlns="http://www.w3.org/2000/svg"><text x="{left}" y="{height / 2:.0f}" font-size="13"'
            f' fill="{MUTED}">{escape(title)}: nothing measured yet</text></svg>'
        )
    values = [v for p in points for v in (p.estimate, p.lower, p.upper) if v is not None and math.isfinite(v)]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    times = [p.at.timestamp() for p in points]
    t0, t1 = min(times), max(times)
    if t1 - t0 < 1:
        t0, t1 = t0 - 1800, t1 + 1800

    def x(at: datetime) -> float:
        return left + (at.timestamp() - t0) / (t1 - t0) * (width - left - right)

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * (height - top - bottom)

    parts = [
        f'{label} xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{left}" y="16" font-size="13" font-weight="600" fill="{INK}">{escape(title)}</text>',
    ]
    for tick in _ticks(low, high):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="{RULE}"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end" fill="{MUTED}">'
            f"{tick:.3g}{escape(unit)}</text>"
        )
    parts.append(
        f'<text x="{left}" y="{height - 12}" font-size="11" fill="{MUTED}">{escape(min(points, key=lambda p: p.at).at.strftime("%Y-%m-%d %H:%M"))}</text>'
        f'<text x="{width - right}" y="{height - 12}" font-size="11" text-anchor="end" fill="{MUTED}">'
        f"{escape(max(points, key=lambda p: p.at).at.strftime('%Y-%m-%d %H:%M'))}</text>"
    )
    for at, text in marks:
        if t0 <= at.timestamp() <= t1:
            parts.append(
                f'<g class="mark" data-at="{escape(at.isoformat())}"><line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{top}"'
                f' y2="{height - bottom}" stroke="{INK}" stroke-dasharray="4 3"/>'
                f'<text x="{x(at) + 4:.1f}" y="{top + 12}" font-size="11" fill="{INK}">{escape(text)}</text></g>'
            )
    for index, one in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        ordered = sorted(one.points, key=lambda p: p.at)
        banded = [p for p in ordered if p.lower is not None and p.upper is not None]
        if len(banded) > 1:
            outline = [f"{x(p.at):.1f},{y(p.upper):.1f}" for p in banded if p.upper is not None] + [
                f"{x(p.at):.1f},{y(p.lower):.1f}" for p in reversed(banded) if p.lower is not None
            ]
            parts.append(f'<polygon class="band" points="{" ".join(outline)}" fill="{colour}" fill-opacity="0.15"/>')
        if len(ordered) > 1:
            line = " ".join(f"{x(p.at):.1f},{y(p.estimate):.1f}" for p in ordered)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in ordered:
            interval = (
                f' data-lower="{p.lower!r}" data-upper="{p.upper!r}"'
                if p.lower is not None and p.upper is not None
                else ""
            )
            parts.append(
                f'<circle class="point" data-arm="{escape(one.name)}" data-at="{escape(p.at.isoformat())}"'
                f' data-now="{"true" if p.now else "false"}"'
                f' data-estimate="{p.estimate!r}"{interval} cx="{x(p.at):.1f}" cy="{y(p.estimate):.1f}" r="3.5"'
                f' fill="{colour}"><title>{escape(one.name)} {p.estimate:.4g}</title></circle>'
            )
    parts.append(_legend([one.name for one in series], width - right))
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Station:
    """One step of the catalog in the journey drawing."""

    iri: str
    title: str
    column: int  # its depth: how many prerequisites deep it sits
    requires: tuple[str, ...]  # IRIs of its prerequisites
    completion: float | None  # share of the segment's users who completed it
    activation: float | None  # share of its completers who activated


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{share:.0%}"


def journey_svg(stations: Sequence[Station]) -> Markup:
    """The steps in columns by depth, an arrow from each prerequisite to the step it opens, and on each step a bar
    as long as its completion rate, with its completion and activation rates in words."""
    box_w, box_h, gap_x, gap_y, top = 250, 54, 60, 14, 30
    columns: dict[int, list[Station]] = {}
    for station in stations:
        columns.setdefault(station.column, []).append(station)
    order = sorted(columns)
    place: dict[str, tuple[float, float]] = {}
    for index, column in enumerate(order):
        for row, station in enumerate(columns[column]):
            place[station.iri] = (10 + index * (box_w + gap_x), top + row * (box_h + gap_y))
    width = 20 + len(order) * (box_w + gap_x) - gap_x
    height = top + max((len(c) for c in columns.values()), default=1) * (box_h + gap_y) + 10
    edges, boxes = [], []
    for station in stations:
        x, y = place[station.iri]
        for before in station.requires:
            if before in place:
                bx, by = place[before]
                edges.append(
                    f'<line class="requires" data-from="{escape(before)}" data-to="{escape(station.iri)}"'
                    f' x1="{bx + box_w:.0f}" y1="{by + box_h / 2:.0f}" x2="{x - 4:.0f}" y2="{y + box_h / 2:.0f}"'
                    f' stroke="{MUTED}" stroke-width="1.2" marker-end="url(#arrow)"/>'
                )
        bar = 0 if station.completion is None else station.completion * (box_w - 16)
        boxes.append(
            f'<g class="step" data-iri="{escape(station.iri)}" data-completion="{station.completion!r}"'
            f' data-activation="{station.activation!r}"><title>{escape(station.title)}</title>'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{box_w}" height="{box_h}" rx="6" fill="#ffffff" stroke="{MUTED}"/>'
            f'<text x="{x + 8:.0f}" y="{y + 17:.0f}" font-size="12" font-weight="600" fill="{INK}">'
            f"{escape(_clip(station.title, 34))}</text>"
            f'<rect x="{x + 8:.0f}" y="{y + 25:.0f}" width="{box_w - 16}" height="7" fill="#e5e7eb"/>'
            f'<rect x="{x + 8:.0f}" y="{y + 25:.0f}" width="{bar:.1f}" height="7" fill="{PALETTE[0]}"/>'
            f'<text x="{x + 8:.0f}" y="{y + 47:.0f}" font-size="11" fill="{MUTED}">completed {_percent(station.completion)}'
            f" · then activated {_percent(station.activation)}</text></g>"
        )
    return Markup(
        f'<svg class="journey" role="img" aria-label="The onboarding steps and their prerequisites"'
        f' viewBox="0 0 {width} {height}" width="100%" xmlns="http://www.w3.org/2000/svg">'
        f'<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
        f' orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{MUTED}"/></marker></defs>'
        + "".join(
            f'<text x="{10 + i * (box_w + gap_x)}" y="18" font-size="12" font-weight="600" fill="{INK}">'
            f"depth {column}</text>"
            for i, column in enumerate(order)
        )
        + "".join(edges)
        + "".join(boxes)
        + "</svg>"
    )


def bars_svg(
    title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, percent: bool
) -> Markup:
    """Grouped bars: for each category, one bar per series (an arm), labelled with its value."""
    width, left, right, top, bottom = 560, 40, 16, 30, 46
    height = 240
    values = [v for _, vs in series for v in vs]
    high = max(values, default=0) or 1
    group = (width - left - right) / max(len(categories), 1)
    bar = min(28.0, group * 0.8 / max(len(series), 1))
    parts = [
        f'<svg class="bars" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%"'
        f' xmlns="http://www.w3.org/2000/svg"><text x="{left}" y="16" font-size="13" font-weight="600"'
        f' fill="{INK}">{escape(title)}</text>',
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" stroke="{MUTED}"/>',
    ]
    for c, category in enumerate(categories):
        x0 = left + c * group + (group - bar * len(series)) / 2
        for s, (name, vs) in enumerate(series):
            v = vs[c]
            h = (height - top - bottom) * v / high
            x = x0 + s * bar
            label = f"{v:.0%}" if percent else f"{v:g}"
            parts.append(
                f'<g class="bar" data-series="{escape(name)}" data-category="{escape(category)}" data-value="{v!r}">'
                f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}"'
                f' fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)}, {escape(category)}: {label}</title></rect>'
                f'<text x="{x + (bar - 2) / 2:.1f}" y="{height - bottom - h - 3:.1f}" font-size="10"'
                f' text-anchor="middle" fill="{INK}">{label}</text></g>'
            )
        parts.append(
            f'<text x="{left + (c + 0.5) * group:.1f}" y="{height - bottom + 14}" font-size="11" text-anchor="middle"'
            f' fill="{MUTED}">{escape(_clip(category, 14))}</text>'
        )
    parts.append(_legend([name for name, _ in series], width - right))
    parts.append("</svg>")
    return Markup("".join(parts))
