"""bench quality's trade-off picture: which metrics are its axes, where each row's dot lands, when it is drawn."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont

from lowdim.metrics import PROMPT, SUBJECT, metric_axis
from lowdim.registry import get_registry
from lowdim_sd.bench.frontier import (
    LIFTS,
    Canvas,
    Point,
    _overlap_area,
    _text_size,
    axis_range,
    draw_frontier,
    frontier_axes,
    marks,
    place_labels,
    points,
    wrap_label,
)
from lowdim_sd.bench.quality import QualityJob
from lowdim_sd.bench.report import Cell, Row, aggregate, write_reports

AXES = {"identity": SUBJECT, "image": SUBJECT, "style": PROMPT}
COLUMNS = {"identity": "Identity", "image": "Image sim", "style": "Style acc"}


def row(label: str, identity: float, style: float, se: float = 0.01) -> Row:
    return Row(label, label, cells={"identity": Cell(identity, se, 10), "style": Cell(style, se, 10)})


def test_the_axes_are_the_first_subject_and_the_first_prompt_metric():
    assert frontier_axes(["image", "style", "identity"], AXES.get) == ("image", "style")
    assert frontier_axes(["identity", "image"], AXES.get) is None  # no prompt metric: no picture
    assert frontier_axes(["unknown", "style"], AXES.get) is None


def test_registered_metrics_declare_their_axis_without_being_built():
    metrics = get_registry().metrics
    assert metric_axis(metrics["tinyfaces-identity"].value) == SUBJECT
    assert metric_axis(metrics["tinyfaces-style"].value) == PROMPT
    assert metric_axis(metrics["face-rec"].value) == SUBJECT and metric_axis(metrics["clip-t"].value) == PROMPT
    assert metric_axis(type("Undeclared", (), {"axis": "sideways"})) is None


@given(st.lists(st.floats(-2, 2, allow_nan=False), min_size=1, max_size=20))
def test_axis_range_holds_every_value_on_a_tenth_grid(values):
    low, high = axis_range(values)
    assert low <= min(values) + 1e-9 and max(values) <= high + 1e-9
    assert high - low >= 0.1 - 1e-9
    assert abs(low * 10 - round(low * 10)) < 1e-6 and abs(high * 10 - round(high * 10)) < 1e-6


def test_canvas_puts_low_values_bottom_left_and_high_values_top_right():
    canvas = Canvas((0.0, 1.0), (-0.5, 0.5), size=(200, 100), margin=(10, 20, 30, 40))
    assert canvas.pixel(0.0, -0.5) == (10, 60)
    assert canvas.pixel(1.0, 0.5) == (170, 20)


def test_a_rows_dot_is_drawn_where_its_scores_are(tmp_path):
    rows = [row("faithful", 0.9, 0.2), row("follows prompts", 0.1, 0.9), Row("unscored", "unscored")]
    assert [p.label for p in points(rows, "identity", "style")] == ["faithful", "follows prompts"]
    path = draw_frontier(rows, "identity", "style", COLUMNS, tmp_path / "frontier.png")
    image = Image.open(path).convert("RGB")
    canvas = Canvas(axis_range([0.19, 0.91]), axis_range([0.09, 0.91]))
    for point, colour in zip(points(rows, "identity", "style"), [(31, 119, 180), (214, 39, 40)], strict=True):
        x, y = canvas.pixel(point.x, point.y)
        assert image.getpixel((round(x), round(y))) == colour
    with pytest.raises(ValueError, match="no row has both"):
        draw_frontier([Row("unscored", "unscored")], "identity", "style", COLUMNS, tmp_path / "none.png")


def scored(method: str, identity: str, scores: dict[str, list[float]]) -> dict:
    return {"method": method, "identity": identity, "scores": scores, "columns": COLUMNS, "seconds": 1.0,
            "bytes": 10, "reference": ""}


def test_bench_reports_draw_it_only_with_both_kinds_of_metric(tmp_path):
    job = QualityJob(identities=tmp_path, out=tmp_path / "bench", methods=["base", "ours"], prompts=["a [V] face"])
    results = [scored(m, f"id-{k}", {"identity": [0.1 * k + (m == "ours")], "style": [1.0 - 0.5 * (m == "ours")]})
               for m in job.methods for k in range(3)]
    rows, columns = aggregate(results, job.methods)
    paths = write_reports(job, results, rows, columns, 2, [], axis_of=AXES.get)
    assert [p.name for p in paths] == ["table.md", "table.json", "frontier.png"]
    (job.out / "frontier.png").unlink()
    paths = write_reports(job, results, rows, columns, 2, [], axis_of={"identity": SUBJECT}.get)
    assert [p.name for p in paths] == ["table.md", "table.json"] and not (job.out / "frontier.png").exists()


def label_boxes(canvas: Canvas, found: list[Point]):
    return place_labels(canvas, found, [(7.0 * len(p.label), 13.0) for p in found])  # about the default font


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_keep_clear_of_other_rows_dots_error_bars_and_labels():
    # Session 15's crowded corner: two rows whose bars cross, a third just right of them, three on one column.
    found = [Point("Ours (keep styles 0.2)", 0.854, 0.360, 0.042, 0.026),
             Point("Ours (keep styles 0.05)", 0.833, 0.352, 0.037, 0.031),
             Point("Only Hyper", 0.833, 0.225, 0.034, 0.030),
             Point("DreamBooth-Agg-1", 1.0, 0.379, 0.0, 0.019),
             Point("DreamBooth", 1.0, 0.349, 0.0, 0.018),
             Point("LiDB DreamBooth", 0.953, 0.287, 0.020, 0.022)]
    canvas = Canvas((0.5, 1.1), (0.1, 0.6))
    boxes = label_boxes(canvas, found)
    obstacles = [box for point in found for box in marks(canvas, point)]
    for number, box in enumerate(boxes):
        assert not any(overlap(box, other) for other in obstacles), found[number].label
        assert not any(overlap(box, other) for other in boxes[:number]), found[number].label


def distance(box, x: float, y: float) -> float:
    return ((max(box[0] - x, 0, x - box[2])) ** 2 + (max(box[1] - y, 0, y - box[3])) ** 2) ** 0.5


def test_each_label_is_nearer_its_own_dot_than_any_other():
    # Session 16's table, whose picture put "LoRA DreamBooth" under Only Hyper (UNet layers)'s dot.
    found = [Point("Ours", 0.538, 0.438, 0.026, 0.020),
             Point("Only Hyper", 0.887, 0.144, 0.024, 0.017),
             Point("Ours (UNet layers)", 0.902, 0.216, 0.018, 0.014),
             Point("Ours (keep styles 0.05)", 0.832, 0.300, 0.026, 0.015),
             Point("Ours (keep styles 0.2)", 0.898, 0.273, 0.021, 0.017),
             Point("Only Hyper (UNet layers)", 0.995, 0.075, 0.005, 0.011),
             Point("No Hyper", 0.493, 0.420, 0.033, 0.027),
             Point("LiDB DreamBooth", 0.955, 0.192, 0.014, 0.016),
             Point("LoRA DreamBooth", 1.000, 0.107, 0.000, 0.013),
             Point("DreamBooth", 1.000, 0.289, 0.000, 0.011),
             Point("DreamBooth-Agg-1", 1.000, 0.325, 0.000, 0.012),
             Point("DreamBooth-Agg-2", 0.982, 0.297, 0.005, 0.012),
             Point("Base model", 1.000, -0.021, 0.000, 0.012)]
    canvas = Canvas(axis_range([p.x - p.x_se for p in found] + [p.x + p.x_se for p in found]),
                    axis_range([p.y - p.y_se for p in found] + [p.y + p.y_se for p in found]))
    boxes = label_boxes(canvas, found)
    dots = [canvas.pixel(p.x, p.y) for p in found]
    for number, box in enumerate(boxes):
        nearest = min(range(len(found)), key=lambda k: distance(box, *dots[k]))
        assert nearest == number, (found[number].label, found[nearest].label)


@settings(deadline=None)  # placing 12 labels takes longer than 200 ms on a loaded 2-core machine: no defect
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.1), st.floats(0, 0.1)),
                min_size=1, max_size=12))
def test_every_label_has_its_size_and_sits_beside_its_own_dot(values):
    found = [Point(f"row {k}", *v) for k, v in enumerate(values)]
    canvas = Canvas(axis_range([p.x for p in found]), axis_range([p.y for p in found]))
    sizes = [(40.0 + 5 * k, 13.0) for k in range(len(found))]
    for point, (width, height), box in zip(found, sizes, place_labels(canvas, found, sizes), strict=True):
        x, y = canvas.pixel(point.x, point.y)
        assert (box[2] - box[0], box[3] - box[1]) == pytest.approx((width, height))
        assert min(abs(box[0] - x), abs(box[2] - x)) == pytest.approx(8)  # just right or just left of the dot
        assert box[1] - y <= 6 + max(LIFTS) and y - box[3] <= 6 + max(LIFTS)  # beside it, or lifted along a line


def test_fourteen_rows_get_fourteen_colours(tmp_path):
    rows = [row(f"method {k}", 0.05 * k, (k % 4) * 0.3, se=0.0) for k in range(14)]
    draw_frontier(rows, "identity", "style", COLUMNS, tmp_path / "f.png")
    image = Image.open(tmp_path / "f.png").convert("RGB")
    xs, ys = [r.cells["style"].mean for r in rows], [r.cells["identity"].mean for r in rows]
    canvas = Canvas(axis_range(xs), axis_range(ys))
    centres = {image.getpixel(tuple(round(v) for v in canvas.pixel(x, y))) for x, y in zip(xs, ys, strict=True)}
    assert len(centres) == 14


WORDS = st.text(alphabet="abcdefghij%0.()", min_size=1, max_size=12)


@given(words=st.lists(st.tuples(WORDS, st.sampled_from([" ", ", "])), min_size=1, max_size=20))
def test_a_long_label_wraps_into_short_lines_that_read_back_as_the_label(words):
    label = "".join(word + gap for word, gap in words).strip(" ,") or "x"
    wrapped = wrap_label(label, width=16).split("\n")
    assert " ".join(wrapped).split() == label.split()  # nothing lost, nothing reordered
    assert all(len(line) <= 16 for line in wrapped)  # no word here is longer than a line


def test_a_drawn_rows_label_breaks_after_its_clauses_not_inside_its_brackets():
    label = "Ours (looks in words, keep styles 0.05), text encoder's part at 0, UNet part from 20% to 80% of the steps"
    assert wrap_label(label).split("\n") == ["Ours (looks in words, keep styles 0.05),", "text encoder's part at 0,",
                                             "UNet part from 20% to 80% of the steps"]
    assert wrap_label("DreamBooth-Agg-1") == "DreamBooth-Agg-1"


# The results page's figure (docs/images/results_frontier.png, session 24): 17 rows, 8 of them within 0.03
# of style 1.0 and 0.25 of each other in identity. (style, identity, their standard errors, label)
KEEP, APART = "Ours (looks in words, keep styles 0.05)", ", text encoder's part at 0, UNet part"
RESULTS_ROWS = [
    (0.538, 0.438, 0.026, 0.020, 'Ours'),
    (0.480, 0.510, 0.026, 0.018, 'Ours (looks in words)'),
    (0.815, 0.402, 0.031, 0.018, 'Ours (looks in words, keep styles 0.05)'),
    (0.982, 0.356, 0.007, 0.020, KEEP + APART + " from 20% to 80% of the steps"),
    (0.987, 0.333, 0.006, 0.020, "Ours (looks in words)" + APART + " from 30% to 80% of the steps"),
    (0.997, 0.303, 0.002, 0.020, KEEP + APART + " from 20% to 80% of the steps, its cross-attention at 0.25"),
    (0.887, 0.144, 0.024, 0.017, 'Only Hyper'),
    (0.493, 0.420, 0.033, 0.027, 'No Hyper'),
    (0.898, 0.273, 0.021, 0.017, 'Ours (keep styles 0.2)'),
    (0.955, 0.192, 0.014, 0.016, 'LiDB DreamBooth'),
    (1.000, 0.107, 0.000, 0.013, 'LoRA DreamBooth'),
    (1.000, 0.289, 0.000, 0.011, 'DreamBooth'),
    (1.000, 0.325, 0.000, 0.012, 'DreamBooth-Agg-1'),
    (0.982, 0.297, 0.005, 0.012, 'DreamBooth-Agg-2'),
    (0.978, 0.169, 0.008, 0.018, 'Textual Inversion'),
    (1.000, -0.021, 0.000, 0.012, 'Base model'),
    (0.997, 0.237, 0.002, 0.020, 'Base model (looks in words)'),
]


def test_the_results_pages_crowded_rows_get_labels_that_hide_no_other_label():
    found = [Point(label, x, y, x_se, y_se) for x, y, x_se, y_se, label in RESULTS_ROWS]
    canvas = Canvas(axis_range([p.x - p.x_se for p in found] + [p.x + p.x_se for p in found]),
                    axis_range([p.y - p.y_se for p in found] + [p.y + p.y_se for p in found]))
    draw = ImageDraw.Draw(Image.new("RGB", canvas.size))
    font = ImageFont.load_default(size=13)
    sizes = [_text_size(draw, wrap_label(point.label), font) for point in found]
    boxes = place_labels(canvas, found, sizes)
    for index, box in enumerate(boxes):  # placed one by one, the last labels of the cluster had no room left
        assert all(_overlap_area(box, other) == 0 for other in boxes[index + 1:]), found[index].label


def test_each_error_bar_is_its_own_axis_standard_error(tmp_path):
    # Identity (up) varies ten times more across identities than style (right): the bars must say so.
    rows = [Row("uneven", "uneven", cells={"identity": Cell(0.5, 0.1, 10), "style": Cell(0.5, 0.01, 10)})]
    [point] = points(rows, "identity", "style")
    assert (point.x_se, point.y_se) == (0.01, 0.1)
    draw_frontier(rows, "identity", "style", COLUMNS, tmp_path / "f.png")
    image = Image.open(tmp_path / "f.png").convert("RGB")
    canvas = Canvas(axis_range([0.49, 0.51]), axis_range([0.4, 0.6]))
    x, y = (round(v) for v in canvas.pixel(0.5, 0.5))
    blue = (31, 119, 180)
    near = range(-2, 3)  # a 2-pixel line lands beside a fractional pixel's rounding

    def blue_at(px: int, py: int, across_x: bool) -> bool:
        return any(image.getpixel((px + d, py) if across_x else (px, py + d)) == blue for d in near)

    # Each bar's extent: the blue pixels joined to the dot, whatever the label drawn beside them.
    up, down, leftmost, rightmost = y, y, x, x
    while blue_at(x, up - 1, True):
        up -= 1
    while blue_at(x, down + 1, True):
        down += 1
    while blue_at(leftmost - 1, y, False):
        leftmost -= 1
    while blue_at(rightmost + 1, y, False):
        rightmost += 1
    (_, top), (_, bottom) = canvas.pixel(0.5, 0.6), canvas.pixel(0.5, 0.4)
    (left, _), (right, _) = canvas.pixel(0.49, 0.5), canvas.pixel(0.51, 0.5)
    assert (up, down) == pytest.approx((top, bottom), abs=1.5)
    assert (leftmost, rightmost) == pytest.approx((left, right), abs=1.5)
    _, horizontal, vertical = marks(canvas, point)  # what a label keeps clear of
    assert (horizontal[0], horizontal[2]) == pytest.approx((left, right))
    assert (vertical[1], vertical[3]) == pytest.approx((top, bottom))


def test_a_subject_metric_that_never_ran_leaves_its_axis_to_the_next_one(tmp_path, monkeypatch):
    # Identity is listed first but was unavailable here (every cell "–"): image, which has scores, is the y axis.
    import lowdim_sd.bench.frontier as frontier

    drawn, draw = [], frontier.draw_frontier

    def spy(rows, subject, prompt, columns, path):
        drawn.append((subject, prompt))
        return draw(rows, subject, prompt, columns, path)

    monkeypatch.setattr(frontier, "draw_frontier", spy)
    job = QualityJob(identities=tmp_path, out=tmp_path / "bench", methods=["base", "ours"], prompts=["a [V] face"])
    results = [scored(m, f"id-{k}", {"image": [0.1 * k + (m == "ours")], "style": [1.0 - 0.5 * (m == "ours")]})
               for m in job.methods for k in range(3)]
    rows, columns = aggregate(results, job.methods)
    assert list(columns) == ["identity", "image", "style"] and all(row.cells["identity"].n == 0 for row in rows)
    paths = write_reports(job, results, rows, columns, 2, [], axis_of=AXES.get)
    assert [p.name for p in paths] == ["table.md", "table.json", "frontier.png"]
    assert drawn == [("image", "style")]
