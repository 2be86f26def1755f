"""The views of a watch in the reports: a line chart per check for report.html (inline SVG drawn here, no script,
no external asset - the page works offline) and the compact list of measurements report.md shows.

Every text that comes from the run (check names, fail_if, errors) is data: escaped, never markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from runner.language.durations import format_seconds
from runner.records.watch_record import Measurement, Watch, WatchCheck

WIDTH, HEIGHT = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 30
MD_MEASUREMENTS = 120  # report.md shows at most this many per check (report.json holds every one)
COLOURS = {"line": "#0969da", "breach": "#cf222e", "threshold": "#9a6700", "decision": "#cf222e",
           "end": "#1a7f37", "grid": "#d8dee4", "muted": "#5f6b76"}


def value_text(value: float | None) -> str:
    return "no data" if value is None else f"{value:.6g}"


def decision(watch: Watch, check: WatchCheck) -> tuple[float | None, str]:
    """When and how the outcome shown on this check's chart was decided: its own breach confirmed, the watch ended
    by another check's breach, or the end of the window."""
    if check.time_to_detect is not None:
        return check.time_to_detect, f"breach confirmed at {format_seconds(check.time_to_detect)}"
    if watch.time_to_detect is not None:
        return watch.time_to_detect, f"watch ended at {format_seconds(watch.time_to_detect)} ({watch.breached_check})"
    ended = watch.duration_s if watch.duration_s is not None else check.decided_at
    if ended is None:
        return None, ""
    return ended, f"{'window ended' if watch.verdict != 'inconclusive' else 'watch ended'} at {format_seconds(ended)}"


@dataclass(frozen=True)
class _Scale:
    t_max: float
    low: float
    high: float

    @classmethod
    def of(cls, check: WatchCheck, until: float | None) -> _Scale:
        values = [m.value for m in check.measurements if m.value is not None]
        if check.threshold is not None:
            values.append(check.threshold)
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        span = high - low
        pad = span * 0.1 if span else max(abs(high) * 0.1, 1.0)
        t_max = max([m.t for m in check.measurements] + [until or 0.0, 1.0])
        return cls(t_max, low - pad if low != 0 or span == 0 else 0.0, high + pad)

    def x(self, t: float) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * min(max(t / self.t_max, 0.0), 1.0), 1)

    def y(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return round(TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - min(max(share, 0.0), 1.0)), 1)


def _segments(measurements: tuple[Measurement, ...]) -> list[list[Measurement]]:
    """Runs of samples with a value: a sample without one breaks the line."""
    runs: list[list[Measurement]] = [[]]
    for m in measurements:
        if m.value is None:
            runs.append([])
        else:
            runs[-1].append(m)
    return [run for run in runs if run]


def _point(scale: _Scale, m: Measurement) -> str:
    note = f" ({m.error})" if m.error else ""
    tip = escape(f"t={format_seconds(m.t)}: {value_text(m.value)}{' - breach' if m.breach else ''}{note}")
    if m.value is None:
        x, y = scale.x(m.t), HEIGHT - BOTTOM
        return (f'<path class="nodata" d="M{x - 3},{y - 3}L{x + 3},{y + 3}M{x - 3},{y + 3}L{x + 3},{y - 3}" '
                f'stroke="{COLOURS["muted"]}"><title>{tip}</title></path>')
    colour = COLOURS["breach"] if m.breach else COLOURS["line"]
    return (f'<circle class="sample{" breach" if m.breach else ""}" cx="{scale.x(m.t)}" cy="{scale.y(m.value)}" '
            f'r="3" fill="{colour}"><title>{tip}</title></circle>')


def _axes(scale: _Scale) -> list[str]:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    parts = [f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{COLOURS["grid"]}"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="{COLOURS["grid"]}"/>']
    for value in (scale.low, scale.high):
        parts.append(f'<text x="{LEFT - 4}" y="{scale.y(value) + 4}" text-anchor="end">{escape(value_text(value))}'
                     "</text>")
    for share in (0.0, 0.5, 1.0):
        t = scale.t_max * share
        anchor = "start" if share == 0 else ("end" if share == 1 else "middle")
        parts.append(f'<text x="{scale.x(t)}" y="{bottom + 16}" text-anchor="{anchor}">'
                     f"{escape(format_seconds(t))}</text>")
    return parts


def _threshold(scale: _Scale, check: WatchCheck) -> list[str]:
    if check.threshold is None:
        return []
    y = scale.y(check.threshold)
    label = escape(f"fail_if {check.fail_if}")
    return [f'<line class="threshold" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" '
            f'stroke="{COLOURS["threshold"]}" stroke-dasharray="6 4"/>',
            f'<text x="{WIDTH - RIGHT - 2}" y="{y - 4}" text-anchor="end" fill="{COLOURS["threshold"]}">{label}</text>']


def _decision(scale: _Scale, at: float | None, label: str, breached: bool) -> list[str]:
    if at is None:
        return []
    x = scale.x(at)
    colour = COLOURS["decision"] if breached else COLOURS["end"]
    anchor = "end" if x > WIDTH / 2 else "start"
    shift = -4 if anchor == "end" else 4
    return [f'<line class="decision" data-t="{at:g}" x1="{x}" y1="{TOP}" x2="{x}" y2="{HEIGHT - BOTTOM}" '
            f'stroke="{colour}" stroke-width="2"/>',
            f'<text x="{x + shift}" y="{TOP + 10}" text-anchor="{anchor}" fill="{colour}">{escape(label)}</text>']


def chart_svg(watch: Watch, check: WatchCheck) -> Markup:
    """The check's measurements as a line chart: its threshold, each sample (breaching ones red, no data as a cross
    on the axis) and a vertical marker at the moment of the decision."""
    at, label = decision(watch, check)
    scale = _Scale.of(check, at)
    parts = _axes(scale) + _threshold(scale, check)
    for run in _segments(check.measurements):
        points = " ".join(f"{scale.x(m.t)},{scale.y(m.value or 0.0)}" for m in run)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{COLOURS["line"]}" stroke-width="1.5"/>')
    parts += [_point(scale, m) for m in check.measurements]
    parts += _decision(scale, at, label, check.verdict == "breached" or watch.verdict == "breached")
    about = escape(f"{check.name}: {len(check.measurements)} samples, fail_if {check.fail_if} for "
                   f"{format_seconds(check.for_s)}, {check.verdict or 'not sampled'}")
    head = (f'<svg class="watch-chart" data-check="{escape(check.name)}" role="img" aria-label="{about}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" preserveAspectRatio="xMidYMid meet" '
            f'xmlns="http://www.w3.org/2000/svg" font-size="11" fill="{COLOURS["muted"]}"><title>{about}</title>')
    return Markup(head + "".join(parts) + "</svg>")


def measurements_md(check: WatchCheck) -> str:
    """`t: value` of every sample (breaching ones bold, no data as `—`), for a Markdown table cell."""
    shown = check.measurements[:MD_MEASUREMENTS]
    cells = []
    for m in shown:
        value = "—" if m.value is None else value_text(m.value)
        cells.append(f"{format_seconds(m.t)}: {f'**{value}**' if m.breach else value}")
    rest = len(check.measurements) - len(shown)
    text = " · ".join(cells) + (f" · … {rest} more in report.json" if rest > 0 else "")
    return md_cell(text or "no sample")


def md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


__all__ = ["chart_svg", "decision", "md_cell", "measurements_md", "value_text"]
