"""The histogram widget's script (quantlens/app/histogram.js), run in headless Chromium.

The app's browser tests drive the widget through marimo. These tests load the script alone in a
blank page and render specs that the app rarely produces (empty histograms, a range far from
zero), with a small object in place of anywidget's model that records what the widget sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from quantlens import stats
from quantlens.app import charts, histogram_widget

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")

# Loads the script as a module and renders it into a fresh <div> with a model that keeps the
# state in a plain object and logs every save_changes() call.
RENDER = """
async ([source, style, spec]) => {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const widget = (await import(url)).default;
  const css = document.createElement("style");
  css.textContent = style;
  document.head.appendChild(css);
  document.body.replaceChildren();
  const host = document.createElement("div");
  host.style.width = "800px";
  document.body.appendChild(host);
  const state = { spec, selection: [] };
  window.saved = [];
  const model = {
    get: (key) => state[key],
    set: (key, value) => { state[key] = value; },
    save_changes: () => window.saved.push(JSON.parse(JSON.stringify(state.selection))),
    on: () => {},
  };
  widget.render({ model, el: host });
}
"""


@pytest.fixture(scope="module")
def page() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": 900, "height": 500})
            tab.goto("about:blank")
            yield tab
        finally:
            browser.close()


def render(page, spec: dict) -> None:
    source = histogram_widget.HistogramWidget._esm
    page.evaluate(RENDER, [source, histogram_widget.HistogramWidget._css, spec])


def spec_of(values: np.ndarray, bins: int = 20, **options) -> dict:
    histogram = stats.histogram(values, bins)
    return histogram_widget.histogram_spec(histogram, kind=charts.Kind.WEIGHT, title="weights", x_title="value", **options)


def test_draws_one_bar_per_bin(page):
    render(page, spec_of(np.arange(100.0), 20))
    assert page.locator(".ql-bar").count() == 20
    assert page.locator(".ql-title").text_content() == "weights"


def test_highlight_mutes_bins_outside(page):
    # Edges 0, 10, ... 100: bins 1 and 4 touch the range and count as inside.
    render(page, spec_of(np.arange(101.0), 10, highlight=(20.0, 40.0)))
    fills = page.locator(".ql-bar").evaluate_all("(nodes) => nodes.map((n) => n.getAttribute('fill'))")
    strong = charts.PALETTES[charts.Kind.WEIGHT].strong
    assert [index for index, fill in enumerate(fills) if fill == strong] == [1, 2, 3, 4]
    assert page.locator(".ql-shade").count() == 1


def test_hover_shows_bin_and_percent(page):
    render(page, spec_of(np.arange(100.0), 10))
    area = page.locator(".ql-overlay").bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.05, area["y"] + area["height"] / 2)
    assert page.locator(".ql-tip").inner_text() == "0 to 9.9 (10 elements)\n10% of elements"


def drag(page, start: float, end: float) -> dict:
    """Drag across the plot area from ``start`` to ``end`` (fractions of its width).

    ``end`` may lie outside 0-1, past the plot's edges. Returns the selection box's bounding box
    just before the button is released.
    """
    area = page.locator(".ql-overlay").bounding_box()
    y = area["y"] + area["height"] / 2
    page.mouse.move(area["x"] + area["width"] * start, y)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * end, y, steps=5)
    box = page.locator(".ql-selection").bounding_box()
    page.mouse.up()
    return box


def test_drag_sends_value_range(page):
    render(page, spec_of(np.arange(101.0), 10))  # edges 0, 10, ... 100
    drag(page, 0.6, 0.2)
    low, high = page.evaluate("window.saved")[-1]
    assert low == pytest.approx(20.0, abs=0.5)
    assert high == pytest.approx(60.0, abs=0.5)
    assert page.locator(".ql-selection").get_attribute("visibility") == "visible"


def test_drag_past_edge_stays_in_plot(page):
    render(page, spec_of(np.arange(101.0), 10))
    area = page.locator(".ql-overlay").bounding_box()
    box = drag(page, 0.5, -0.1)
    assert box["x"] >= area["x"] - 0.5
    assert page.evaluate("window.saved")[-1][0] == pytest.approx(0.0, abs=1e-9)


def test_unselectable_chart_ignores_drag(page):
    render(page, spec_of(np.arange(101.0), 10, selectable=False))
    drag(page, 0.2, 0.6)
    assert page.evaluate("window.saved") == []
    assert page.locator(".ql-selection").get_attribute("visibility") == "hidden"


def test_click_clears_selection(page):
    render(page, spec_of(np.arange(101.0), 10))
    area = page.locator(".ql-overlay").bounding_box()
    page.mouse.click(area["x"] + area["width"] / 2, area["y"] + area["height"] / 2)
    assert page.evaluate("window.saved") == [[]]
    assert page.locator(".ql-selection").get_attribute("visibility") == "hidden"


def test_empty_histogram_draws_axes(page):
    # No finite value: every bin has a share of 0 %.
    render(page, spec_of(np.full(10, np.nan), 10))
    assert page.locator(".ql-bar").count() == 10
    assert "0%" in page.locator(".ql-axes").text_content()


def test_far_range_ticks_differ(page):
    # A constant 1e20: its bins span a few float64 steps, so tick labels need 17 digits and a tick
    # step added to 1e20 can change nothing. The page must not hang, and the labels must differ.
    render(page, spec_of(np.full(10, 1e20), 10))
    assert page.locator(".ql-bar").count() == 10
    labels = page.locator(".ql-axes text[text-anchor=middle]").all_text_contents()[:-1]  # the last is the axis title
    assert "1e+20" in labels
    assert len(set(labels)) == len(labels)
