"""End to end: `quantlens app` served on 127.0.0.1 and driven in headless Chromium.

Needs Chromium at /usr/bin/chromium and the CIFAR-10 test batch. The browser may only reach the
app's server: every other request is aborted (marimo's plotly plugin requests MathJax from a CDN).
Screenshots, the server log and the page-load timings go to artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_PREFIXES = ("http://127.0.0.1:", "data:", "blob:")
SERVER_START_SECONDS = 90
UPDATE_MS = 60_000  # wait for cells to re-run; the machine may be busy
CAPTURED = re.compile(r"Captured (\d+) tensors")
ORANGE = "rgb(255, 127, 14) 1"
BLUE = "rgb(31, 119, 180) 1"

# Model label, a layer label in the Layer list, and whether its weight is quantized.
FLOWS = [
    ("resnet8_int8.onnx", "/stack1/conv1/Conv (Conv)", True),
    ("resnet8_int8.pt", "stack1.conv1 (ConvReLU2d)", True),
    ("resnet8.pt", "stack1.conv1 (Conv2d)", False),
]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_server(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"quantlens app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"quantlens app did not answer at {url} within {SERVER_START_SECONDS} s")


@pytest.fixture(scope="module")
def server(cifar_dir: Path) -> Iterator[tuple[str, Path]]:
    """Start `quantlens app` on a free loopback port; yield its URL and log file, then stop it."""
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "app_server.log"
    port = free_port()
    command = [
        sys.executable, "-m", "quantlens.cli.main", "app",
        "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(cifar_dir),
    ]
    with log.open("w") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(url, process, log)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(server) -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, server) -> Iterator[object]:
    """A fresh page that can reach only the app server; fails the test on new server tracebacks."""
    _, log = server
    start = log.stat().st_size
    context = browser.new_context(viewport={"width": 1300, "height": 1400})
    context.route("**/*", _local_only)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()
    new_log = log.read_text(errors="replace")[start:]
    assert "Traceback" not in new_log, f"the app raised on the server:\n{new_log[-3000:]}"


def _local_only(route) -> None:
    if route.request.url.startswith(LOCAL_PREFIXES):
        route.continue_()
    else:
        route.abort()


def first_histogram_ms(page, url: str) -> float:
    """Open the app and return milliseconds from navigation start to the first drawn histogram bar."""
    page.goto(url)
    page.locator(".js-plotly-plot .trace.bars .point").first.wait_for(state="visible", timeout=UPDATE_MS)
    return float(page.evaluate("() => performance.now()"))


def select_option(page, label: str) -> None:
    select = page.locator("select").filter(has=page.locator("option", has_text=label)).first
    select.select_option(label=label)


def plot_title(page, index: int = 0):
    return page.locator(".js-plotly-plot .gtitle").nth(index)


def bar_fills(page, index: int = 0) -> set[str]:
    """Return the distinct bar colours of a plot as ``"rgb(...) opacity"`` strings."""
    paths = page.locator(".js-plotly-plot").nth(index).locator(".trace.bars .point path")
    script = "(nodes) => nodes.map((n) => getComputedStyle(n).fill + ' ' + getComputedStyle(n).fillOpacity)"
    return set(paths.evaluate_all(script))


def save_screenshot(page, name: str) -> Path:
    # marimo scrolls inside its own container, so a tall viewport shows the whole app.
    page.set_viewport_size({"width": 1300, "height": 4600})
    page.wait_for_timeout(1500)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1300, "height": 1400})
    return path


def test_first_histogram_time(page, server):
    url, _ = server
    cold = first_histogram_ms(page, url)
    page.goto("about:blank")
    warm = first_histogram_ms(page, url)
    record = {
        "first_histogram_ms_cold": round(cold),
        "first_histogram_ms_warm": round(warm),
        "note": "navigation start to the first histogram bar; cold is the first page of a new server",
    }
    (ARTIFACTS / "app_timing.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"first histogram: cold {cold:.0f} ms, warm {warm:.0f} ms")
    assert warm < UPDATE_MS


def set_bins(page, bins: int) -> None:
    slider = page.get_by_role("slider").first
    slider.focus()
    steps = (bins - int(slider.get_attribute("aria-valuenow"))) // 5
    for _ in range(abs(steps)):
        slider.press("ArrowRight" if steps > 0 else "ArrowLeft")
    expect(slider).to_have_attribute("aria-valuenow", str(bins), timeout=UPDATE_MS)


def apply_range(page, low: str, high: str) -> str:
    fields = page.locator("marimo-form input")
    fields.nth(0).fill(low)
    fields.nth(0).press("Tab")
    fields.nth(1).fill(high)
    fields.nth(1).press("Tab")
    page.get_by_role("button", name="Apply range").click()
    result = page.get_by_text("Applied range").locator("..")
    expect(result).to_contain_text("elements inside", timeout=UPDATE_MS)
    return result.inner_text()


def drag_on_histogram(page) -> str:
    area = page.locator(".js-plotly-plot").first.locator(".nsewdrag").first.bounding_box()
    y = area["y"] + area["height"] / 2
    page.mouse.move(area["x"] + area["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.6, y, steps=12)
    page.mouse.up()
    result = page.get_by_text("Dragged range").locator("..")
    expect(result).to_contain_text("elements inside", timeout=UPDATE_MS)
    return result.inner_text()


def capture_cifar10(page, index: int) -> int:
    field = page.get_by_role("textbox", name=re.compile("CIFAR-10 test index"))
    field.fill(str(index))
    field.press("Tab")
    page.get_by_role("button", name="Run and capture").click()
    callout = page.get_by_text(CAPTURED)
    expect(callout).to_be_visible(timeout=UPDATE_MS)
    return int(CAPTURED.search(callout.inner_text()).group(1))


@pytest.mark.parametrize(("model", "layer", "quantized"), FLOWS, ids=[flow[0] for flow in FLOWS])
def test_weights_and_activations_flow(page, server, model, layer, quantized):
    url, _ = server
    page.goto(url)
    page.locator(".js-plotly-plot").first.wait_for(timeout=UPDATE_MS)

    select_option(page, model)
    expect(page.locator("option", has_text=layer)).to_have_count(1, timeout=UPDATE_MS)
    select_option(page, layer)
    layer_name = layer.rsplit(" (", 1)[0]
    expect(plot_title(page)).to_contain_text(f"of {layer_name} (", timeout=UPDATE_MS)
    expect(plot_title(page)).to_contain_text("Weight", timeout=UPDATE_MS)
    assert bar_fills(page) == {BLUE}

    codes_switch = page.get_by_role("radio", name="integer codes")
    if quantized:
        codes_switch.click()
        expect(plot_title(page)).to_contain_text("integer codes", timeout=UPDATE_MS)
        expect(page.get_by_text("Saturation")).to_be_visible(timeout=UPDATE_MS)
        expect(page.locator(".js-plotly-plot .gtitle", has_text="integer codes of")).to_have_count(1)
        expect(page.get_by_text("Per-channel quantization")).to_be_visible()
    else:
        expect(codes_switch).to_have_count(0)
    expect(page.locator(".js-plotly-plot .gtitle", has_text="Per-channel range")).to_have_count(1)
    expect(page.get_by_role("heading", name="Weight statistics")).to_be_visible()

    set_bins(page, 100)
    expect(page.locator(".js-plotly-plot").first.locator(".trace.bars .point")).to_have_count(100, timeout=UPDATE_MS)

    low, high = ("-20", "20") if quantized else ("-0.05", "0.05")
    applied = apply_range(page, low, high)
    assert f"[{low}, {high}]" in applied
    fills = bar_fills(page)
    assert BLUE in fills, f"no bar keeps the weight colour: {fills}"
    assert len(fills) == 2, f"in-range bins are not highlighted: {fills}"
    assert "elements inside" in drag_on_histogram(page)
    stem = Path(model).name.replace(".", "_")
    save_screenshot(page, f"app_{stem}_weights.png")

    captured = capture_cifar10(page, 3)
    assert captured > 0
    expect(page.get_by_text("Label:")).to_be_visible()
    expect(page.get_by_text("Top-3:")).to_be_visible()

    page.get_by_role("radio", name="Activations").click()
    expect(plot_title(page)).to_contain_text("Activation", timeout=UPDATE_MS)
    assert bar_fills(page) == {ORANGE}
    expect(page.get_by_role("heading", name="Activation statistics")).to_be_visible()
    options = page.locator("select").filter(has=page.locator("option", has_text=f"{captured}. ")).first
    labels = options.locator("option").all_inner_texts()
    assert len(labels) == captured
    assert [int(label.split(".", 1)[0]) for label in labels] == list(range(1, captured + 1))

    shot = save_screenshot(page, f"app_{stem}_activations.png")
    assert shot.stat().st_size > 0

    last = labels[-1]
    options.select_option(label=last)
    expect(plot_title(page)).to_contain_text(last.split(". ", 1)[1].rsplit(" (", 1)[0], timeout=UPDATE_MS)

    other = "resnet8.onnx" if model != "resnet8.onnx" else "resnet8_int8.onnx"
    select_option(page, other)
    expect(page.get_by_text("Run a capture above to inspect activations too.")).to_be_visible(timeout=UPDATE_MS)
    expect(page.get_by_role("radio", name="Activations")).to_have_count(0)
    expect(plot_title(page)).to_contain_text("Weight", timeout=UPDATE_MS)


def test_random_and_uploaded_inputs(page, server, tmp_path):
    from PIL import Image

    url, _ = server
    page.goto(url)
    page.locator(".js-plotly-plot").first.wait_for(timeout=UPDATE_MS)
    select_option(page, "resnet8.onnx")
    expect(page.get_by_text(re.compile(r"float32 ONNX"))).to_be_visible(timeout=UPDATE_MS)

    page.get_by_role("radio", name="random input").click()
    seed = page.get_by_role("textbox", name=re.compile("Random seed"))
    seed.fill("5")
    seed.press("Tab")
    page.get_by_role("button", name="Run and capture").click()
    expect(page.get_by_text(CAPTURED)).to_be_visible(timeout=UPDATE_MS)
    expect(page.get_by_text("random (seed 5)")).to_be_visible()

    image = tmp_path / "upload.png"
    Image.new("RGB", (48, 48), (30, 160, 40)).save(image)
    page.get_by_role("radio", name="uploaded image").click()
    page.locator("input[type=file]").set_input_files(str(image))
    page.get_by_role("button", name="Run and capture").click()
    expect(page.get_by_text(CAPTURED)).to_be_visible(timeout=UPDATE_MS)
    expect(page.get_by_text("upload.png", exact=False).first).to_be_visible()
    expect(page.get_by_text(re.compile("resized from 48x48"))).to_be_visible()


def test_overview_csv_download(page, server):
    url, _ = server
    page.goto(url)
    page.locator(".js-plotly-plot").first.wait_for(timeout=UPDATE_MS)
    expect(page.get_by_role("heading", name="Overview of all layers")).to_be_visible(timeout=UPDATE_MS)
    with page.expect_download(timeout=UPDATE_MS) as download_info:
        page.get_by_text("Download CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith("_overview.csv")
    lines = Path(download.path()).read_text().strip().split("\n")
    assert lines[0].startswith("layer,op_type,tensor,role,shape")
    assert len(lines) > 10
