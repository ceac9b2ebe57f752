"""The trade-off picture of ``lowdim bench quality``: subject fidelity against prompt fidelity, one dot per row.

A personalization method sits somewhere between copying the reference (high subject fidelity, prompts
ignored) and the base model (prompts followed, no subject). A table hides that trade-off in two columns;
this scatter shows which rows are better on both (up and to the right) and which only trade one for the
other. The axes are the first metric of each kind among the table's columns (``lowdim.metrics.SUBJECT``
and ``PROMPT``), so a plugin's metrics get the picture by declaring their ``axis``. Only PIL is needed.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lowdim.metrics import PROMPT, SUBJECT, metric_axis
from lowdim_sd.bench.report import Row
from lowdim_sd.images import save_png

SIZE = (760, 660)
LABEL_WIDTH = 40  # characters per line of a dot's label
LABEL_OVER_LABEL = 4.0  # how much worse a label hiding another label is than one hiding a dot's bar
LEADER_FROM = 14  # pixels between a label and its dot beyond which a line joins them
MARGIN = (78, 40, 30, 62)  # left, top, right, bottom: room for the tick labels and axis titles
# In square pixels of hidden marks: worse than covering a dot or an error bar, better than hiding most of
# another label (LABEL_OVER_LABEL times its area), which no one can read.
MISLEADING_COST = 3000.0
REPLACE_ROUNDS = 6  # passes that move each label again once all are placed
LIFTS = (16, 32, 48, 64, 80, 100, 120)  # pixels a label may move up or down from beside its dot (with a leader line)
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 128), (128, 128, 0),
           (0, 0, 0), (153, 0, 76), (0, 120, 90), (200, 150, 0))  # 16: the TinyFaces table has 14 rows


@dataclass(frozen=True)
class Point:
    label: str
    x: float  # prompt fidelity
    y: float  # subject fidelity
    x_se: float
    y_se: float


def frontier_axes(columns: Sequence[str], axis_of: Callable[[str], str | None]) -> tuple[str, str] | None:
    """(subject metric, prompt metric): the first column of each kind, or None without both."""
    subject = next((name for name in columns if axis_of(name) == SUBJECT), None)
    prompt = next((name for name in columns if axis_of(name) == PROMPT), None)
    return (subject, prompt) if subject and prompt else None


def registered_axis(name: str) -> str | None:
    """The axis a registered metric declares, read from its factory without building it (no model load)."""
    from lowdim.registry import get_registry

    metrics = get_registry().metrics
    return metric_axis(metrics[name].value) if name in metrics else None


def points(rows: Sequence[Row], subject: str, prompt: str) -> list[Point]:
    """One point per row that has both scores."""
    out = []
    for row in rows:
        y, x = row.cells.get(subject), row.cells.get(prompt)
        if x is not None and y is not None and x.n and y.n:
            out.append(Point(row.label, x.mean, y.mean, x.se, y.se))
    return out


def axis_range(values: Sequence[float], step: float = 0.1) -> tuple[float, float]:
    """The smallest range on a ``step`` grid holding every value, at least one step wide."""
    low = math.floor(min(values) / step - 1e-9) * step
    high = math.ceil(max(values) / step + 1e-9) * step
    return (low, high) if high - low >= step else (low, low + step)


class Canvas:
    """Data coordinates to pixels: x grows right, y grows up, inside the margins."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float], size=SIZE, margin=MARGIN):
        self.x_range, self.y_range, self.size, self.margin = x_range, y_range, size, margin

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.margin
        width, height = self.size[0] - left - right, self.size[1] - top - bottom
        u = (x - self.x_range[0]) / (self.x_range[1] - self.x_range[0])
        v = (y - self.y_range[0]) / (self.y_range[1] - self.y_range[0])
        return left + u * width, top + (1 - v) * height


def draw_frontier(rows: Sequence[Row], subject: str, prompt: str, columns: dict[str, str], path: Path) -> Path:
    """Write the scatter of ``rows`` (mean ± standard error bars) to ``path``; returns the path."""
    found = points(rows, subject, prompt)
    if not found:
        raise ValueError(f"no row has both {subject} and {prompt} scores")
    canvas = Canvas(axis_range([p.x - p.x_se for p in found] + [p.x + p.x_se for p in found]),
                    axis_range([p.y - p.y_se for p in found] + [p.y + p.y_se for p in found]))
    image = Image.new("RGB", SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    _draw_axes(draw, canvas, font, columns.get(prompt, prompt), columns.get(subject, subject))
    colours = [COLOURS[number % len(COLOURS)] for number in range(len(found))]
    for point, colour in zip(found, colours, strict=True):
        _draw_marks(draw, canvas, point, colour)
    labels = [wrap_label(point.label) for point in found]
    sizes = [_text_size(draw, label, font) for label in labels]
    for point, label, colour, box in zip(found, labels, colours, place_labels(canvas, found, sizes), strict=True):
        dot = canvas.pixel(point.x, point.y)
        if _distance(box, dot) > LEADER_FROM:  # pushed away by its neighbours: a line says whose label it is
            edge = (min(max(dot[0], box[0]), box[2]), min(max(dot[1], box[1]), box[3]))
            draw.line([edge, dot], fill=colour, width=1)
        draw.multiline_text((box[0], box[1]), label, font=font, fill=colour, anchor="la", spacing=1)
    save_png(image, path)
    return path


Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels


def _geometry(canvas: Canvas, point: Point) -> tuple[float, float, float, float, float, float]:
    """Pixels of the dot's centre (x, y), its horizontal bar's ends (x0, x1) and vertical bar's (y0 low, y1 high)."""
    x, y = canvas.pixel(point.x, point.y)
    x0, _ = canvas.pixel(point.x - point.x_se, point.y)
    x1, _ = canvas.pixel(point.x + point.x_se, point.y)
    _, y0 = canvas.pixel(point.x, point.y - point.y_se)
    _, y1 = canvas.pixel(point.x, point.y + point.y_se)
    return x, y, x0, x1, y0, y1


def marks(canvas: Canvas, point: Point) -> list[Box]:
    """The pixels a point's dot and error bars cover, as boxes a label must not hide."""
    x, y, x0, x1, y0, y1 = _geometry(canvas, point)
    return [(x - 6, y - 6, x + 6, y + 6), (x0, y - 2, x1, y + 2), (x - 2, y1, x + 2, y0)]


def place_labels(canvas: Canvas, found: Sequence[Point], sizes: Sequence[tuple[float, float]]) -> list[Box]:
    """One box per point for its label: beside its dot, clear of every dot, error bar and earlier label
    when some candidate spot is, else where it hides the least."""
    obstacles = [box for point in found for box in marks(canvas, point)]
    dots = [canvas.pixel(point.x, point.y) for point in found]
    left, top, right, bottom = canvas.margin
    plot = (left, top, canvas.size[0] - right, canvas.size[1] - bottom)
    spots = [[box for box in _candidates(x, y, size) if _inside(box, plot)] or list(_candidates(x, y, size))
             for (x, y), size in zip(dots, sizes, strict=True)]
    placed: list[Box] = []
    for dot, candidates in zip(dots, spots, strict=True):
        placed.append(min(candidates, key=lambda box: _label_cost(box, dot, dots, obstacles, placed)))
    # Placed one by one, an early label takes a spot a later one needed: move each again against all the
    # others, for at most REPLACE_ROUNDS rounds or until none moves.
    for _ in range(REPLACE_ROUNDS):
        moved = False
        for index, (dot, candidates) in enumerate(zip(dots, spots, strict=True)):
            others = placed[:index] + placed[index + 1:]

            def cost(box: Box, dot: tuple[float, float] = dot, others: list[Box] = others) -> float:
                return _label_cost(box, dot, dots, obstacles, others)

            best = min(candidates, key=cost)
            if cost(best) < cost(placed[index]):
                placed[index], moved = best, True
        if not moved:
            break
    return placed


def _label_cost(box: Box, own: tuple[float, float], dots: Sequence[tuple[float, float]],
                obstacles: Sequence[Box], labels: Sequence[Box]) -> float:
    # Text over text is unreadable, text over a bar only hides a little of it.
    hidden = sum(_overlap_area(box, other) for other in obstacles)
    hidden += LABEL_OVER_LABEL * sum(_overlap_area(box, other) for other in labels)
    # A label nearer another row's dot than its own names the wrong dot to the eye.
    misleading = any(_distance(box, dot) < _distance(box, own) for dot in dots)
    return hidden + MISLEADING_COST * misleading


def _distance(box: Box, dot: tuple[float, float]) -> float:
    dx = max(box[0] - dot[0], 0.0, dot[0] - box[2])
    dy = max(box[1] - dot[1], 0.0, dot[1] - box[3])
    return (dx * dx + dy * dy) ** 0.5


def _candidates(x: float, y: float, size: tuple[float, float]):
    """Spots beside the dot in order of preference: right then left, just above then below, level with it,
    then further."""
    width, height = size
    for top in (y - 6 - height, y + 6):
        yield (x + 8, top, x + 8 + width, top + height)
        yield (x - 8 - width, top, x - 8, top + height)
    yield (x + 8, y - height / 2, x + 8 + width, y + height / 2)
    yield (x - 8 - width, y - height / 2, x - 8, y + height / 2)
    for lift in LIFTS:
        for top in (y - 6 - height - lift, y + 6 + lift):
            yield (x + 8, top, x + 8 + width, top + height)
            yield (x - 8 - width, top, x - 8, top + height)


def wrap_label(label: str, width: int = LABEL_WIDTH) -> str:
    """A row's label on lines of at most ``width`` characters, broken after its commas first: a drawn row's
    label ("Ours (looks in words), text encoder's part at 0, UNet part from 30% of the steps") would
    otherwise run across other rows' dots or off the picture."""
    lines: list[str] = []
    for clause in _clauses(label):
        if lines and len(lines[-1]) + 1 + len(clause) <= width:
            lines[-1] += " " + clause
        else:
            lines.extend(textwrap.wrap(clause, width) or [""])
    return "\n".join(lines)


def _clauses(label: str) -> list[str]:
    """'A (b, c), d' -> ['A (b, c),', 'd']: split after the commas outside parentheses."""
    clauses, depth, start = [], 0, 0
    for index, char in enumerate(label):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            clauses.append(label[start:index + 1].strip())
            start = index + 1
    return [*clauses, label[start:].strip()]


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[float, float]:
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, anchor="la", spacing=1)
    return right - left, bottom - top


def _inside(box: Box, bounds: Box) -> bool:
    return bounds[0] <= box[0] and bounds[1] <= box[1] and box[2] <= bounds[2] and box[3] <= bounds[3]


def _overlap_area(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _ticks(low: float, high: float, step: float = 0.1) -> list[float]:
    count = round((high - low) / step)
    stride = max(1, math.ceil(count / 8))  # at most about eight labelled ticks per axis
    return [round(low + k * step, 6) for k in range(0, count + 1, stride)]


def _draw_axes(draw: ImageDraw.ImageDraw, canvas: Canvas, font, x_title: str, y_title: str) -> None:
    left, top, right, bottom = canvas.margin
    width, height = canvas.size
    grey, ink = (225, 225, 225), (40, 40, 40)
    for x in _ticks(*canvas.x_range):
        px, _ = canvas.pixel(x, canvas.y_range[0])
        draw.line([(px, top), (px, height - bottom)], fill=grey)
        draw.text((px, height - bottom + 6), f"{x:.1f}", font=font, fill=ink, anchor="mt")
    for y in _ticks(*canvas.y_range):
        _, py = canvas.pixel(canvas.x_range[0], y)
        draw.line([(left, py), (width - right, py)], fill=grey)
        draw.text((left - 6, py), f"{y:.1f}", font=font, fill=ink, anchor="rm")
    draw.rectangle([(left, top), (width - right, height - bottom)], outline=ink)
    draw.text(((left + width - right) / 2, height - 8), f"{x_title}: prompt fidelity, better to the right",
              font=font, fill=ink, anchor="ms")
    draw.text((left, top - 10), f"{y_title}: subject fidelity, better up (mean ± standard error over identities)",
              font=font, fill=ink, anchor="ls")


def _draw_marks(draw: ImageDraw.ImageDraw, canvas: Canvas, point: Point, colour) -> None:
    x, y, x0, x1, y0, y1 = _geometry(canvas, point)
    draw.line([(x0, y), (x1, y)], fill=colour, width=2)
    draw.line([(x, y0), (x, y1)], fill=colour, width=2)
    draw.ellipse([(x - 5, y - 5), (x + 5, y + 5)], fill=colour)
