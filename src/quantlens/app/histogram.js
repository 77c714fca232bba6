// quantlens histogram: bars drawn as SVG from a spec that the server binned, with a hover label
// per bar and a horizontal range selected by dragging. It needs no chart library, so the page's
// first chart draws without waiting for plotly's 4.6 MB bundle.

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 300;
const MARGIN = { left: 64, right: 20, top: 10, bottom: 48 };
const MIN_DRAG_PX = 4;

function element(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    node.setAttribute(key, String(value));
  }
  if (parent) {
    parent.appendChild(node);
  }
  return node;
}

// Tick values at 1, 2 or 5 times a power of ten, about `count` of them over [low, high], and
// the step between them.
function ticks(low, high, count) {
  const span = high - low;
  if (!(span > 0) || !Number.isFinite(span)) {
    return { values: [low], step: Math.abs(low) || 1 };
  }
  const rough = span / count;
  const power = Math.pow(10, Math.floor(Math.log10(rough)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) || 10 * power;
  // Count in whole steps: far from zero, adding a small step to a large value can change nothing.
  const first = Math.ceil(low / step - 1e-9);
  const last = Math.floor(high / step + 1e-9);
  if (!(last - first <= 4 * count)) {
    return { values: [low, high], step: span };
  }
  const values = [];
  for (let k = first; k <= last; k += 1) {
    values.push(k === 0 ? 0 : k * step);
  }
  return { values, step };
}

// Enough significant digits to tell ticks `step` apart, with exponent notation for very large or
// small magnitudes.
function tickText(value, step) {
  const magnitude = Math.abs(value);
  if (magnitude === 0) {
    return "0";
  }
  const digits = Math.min(17, Math.max(1, Math.ceil(Math.log10(magnitude / step) - 1e-9) + 1));
  if (magnitude >= 1e6 || magnitude < 1e-4) {
    return value.toExponential(digits - 1).replace(/\.?0+e/, "e");
  }
  return String(Number(value.toPrecision(digits)));
}

function draw(root, spec, model, state) {
  root.replaceChildren();
  const width = Math.max(root.clientWidth || 0, 320);
  const edges = spec.edges || [];
  const percents = spec.percents || [];
  const bins = percents.length;
  // The title is HTML so that a long tensor name wraps instead of running off the chart.
  const title = document.createElement("div");
  title.className = "ql-title";
  title.textContent = spec.title || "";
  root.appendChild(title);
  const plot = document.createElement("div");
  plot.className = "ql-plot";
  root.appendChild(plot);
  const svg = element("svg", { width, height: HEIGHT, role: "img", "aria-label": spec.title || "histogram" }, plot);
  if (bins === 0 || edges.length !== bins + 1) {
    return;
  }
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const low = edges[0];
  const high = edges[bins];
  const span = high > low ? high - low : 1;
  const peak = Math.max(...percents);
  const top = peak > 0 ? peak * 1.05 : 1;
  const x = (value) => MARGIN.left + ((value - low) / span) * plotWidth;
  const y = (percent) => MARGIN.top + plotHeight * (1 - percent / top);
  const valueAt = (px) => low + ((px - MARGIN.left) / plotWidth) * span;

  const axes = element("g", { class: "ql-axes" }, svg);
  const yTicks = ticks(0, top, 5);
  for (const tick of yTicks.values) {
    element("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(tick), y2: y(tick), class: "ql-grid" }, axes);
    const label = element("text", { x: MARGIN.left - 6, y: y(tick) + 4, "text-anchor": "end" }, axes);
    label.textContent = tickText(tick, yTicks.step) + "%";
  }
  // Fewer ticks when long labels (a narrow range far from zero) would overlap, at about 7 px a character.
  let xCount = Math.max(2, Math.floor(plotWidth / 90));
  let xTicks = ticks(low, high, xCount);
  const longest = (found) => Math.max(...found.values.map((v) => tickText(v, found.step).length));
  while (xCount > 2 && longest(xTicks) * 7 > plotWidth / xTicks.values.length) {
    xCount = Math.floor(xCount / 2);
    xTicks = ticks(low, high, xCount);
  }
  for (const tick of xTicks.values) {
    const label = element("text", { x: x(tick), y: MARGIN.top + plotHeight + 16, "text-anchor": "middle" }, axes);
    label.textContent = tickText(tick, xTicks.step);
  }
  const xTitle = element("text", { x: MARGIN.left + plotWidth / 2, y: HEIGHT - 8, "text-anchor": "middle" }, axes);
  xTitle.textContent = spec.x_title || "";
  const yTitle = element("text", {
    x: 14,
    y: MARGIN.top + plotHeight / 2,
    "text-anchor": "middle",
    transform: `rotate(-90 14 ${MARGIN.top + plotHeight / 2})`,
  }, axes);
  yTitle.textContent = spec.y_title || "";

  if (spec.shade) {
    const left = x(Math.max(spec.shade[0], low));
    const right = x(Math.min(spec.shade[1], high));
    if (right > left) {
      element("rect", {
        class: "ql-shade", x: left, y: MARGIN.top, width: right - left, height: plotHeight, fill: spec.color, "fill-opacity": 0.08,
      }, svg);
    }
  }

  const bars = element("g", { class: "ql-bars" }, svg);
  for (let i = 0; i < bins; i += 1) {
    const left = x(edges[i]);
    const barWidth = x(edges[i + 1]) - left;
    const gap = Math.min(barWidth * 0.025, 1);
    element("rect", {
      class: "ql-bar",
      "data-index": i,
      x: left + gap,
      y: y(percents[i]),
      width: Math.max(barWidth - 2 * gap, 0.5),
      height: Math.max(y(0) - y(percents[i]), 0),
      fill: spec.colors[i],
    }, bars);
  }
  element("line", { class: "ql-baseline", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(0), y2: y(0) }, svg);

  const box = element("rect", { class: "ql-selection", y: MARGIN.top, height: plotHeight, width: 0, x: 0, visibility: "hidden" }, svg);
  if (state.selection) {
    const [a, b] = state.selection.map(x);
    box.setAttribute("x", Math.max(Math.min(a, b), MARGIN.left));
    box.setAttribute("width", Math.abs(b - a));
    box.setAttribute("visibility", "visible");
  }
  const overlay = element("rect", {
    class: "ql-overlay", x: MARGIN.left, y: MARGIN.top, width: plotWidth, height: plotHeight, fill: "transparent",
  }, svg);
  const tip = document.createElement("div");
  tip.className = "ql-tip";
  tip.hidden = true;
  plot.appendChild(tip);

  const pointerX = (event) => event.clientX - svg.getBoundingClientRect().left;
  const binAt = (px) => {
    const value = valueAt(px);
    let i = 0;
    while (i < bins - 1 && value >= edges[i + 1]) {
      i += 1;
    }
    return i;
  };
  let dragStart = null;
  overlay.addEventListener("pointermove", (event) => {
    const px = pointerX(event);
    if (dragStart !== null) {
      const end = Math.min(Math.max(px, MARGIN.left), MARGIN.left + plotWidth);
      box.setAttribute("x", Math.min(dragStart, end));
      box.setAttribute("width", Math.abs(end - dragStart));
      box.setAttribute("visibility", "visible");
      tip.hidden = true;
      return;
    }
    const i = binAt(px);
    tip.textContent = "";
    for (const line of [spec.labels[i], `${Number(percents[i].toPrecision(3))}% ${spec.unit || ""}`]) {
      const row = document.createElement("div");
      row.textContent = line;
      tip.appendChild(row);
    }
    tip.hidden = false;
    tip.style.left = `${Math.max(Math.min(px + 12, width - tip.offsetWidth - 4), 0)}px`;
    tip.style.top = `${Math.max(y(percents[i]) - tip.offsetHeight - 6, 0)}px`;
  });
  overlay.addEventListener("pointerleave", () => {
    tip.hidden = true;
  });
  overlay.addEventListener("pointerdown", (event) => {
    if (spec.selectable === false) {
      return;
    }
    overlay.setPointerCapture(event.pointerId);
    dragStart = Math.min(Math.max(pointerX(event), MARGIN.left), MARGIN.left + plotWidth);
  });
  overlay.addEventListener("pointerup", (event) => {
    if (dragStart === null) {
      return;
    }
    const px = Math.min(Math.max(pointerX(event), MARGIN.left), MARGIN.left + plotWidth);
    const start = Math.min(Math.max(dragStart, MARGIN.left), MARGIN.left + plotWidth);
    dragStart = null;
    if (Math.abs(px - start) < MIN_DRAG_PX) {
      // A click clears the selection.
      state.selection = null;
      box.setAttribute("visibility", "hidden");
      model.set("selection", []);
    } else {
      state.selection = [valueAt(Math.min(start, px)), valueAt(Math.max(start, px))];
      model.set("selection", state.selection);
    }
    model.save_changes();
  });
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "ql-histogram";
  el.appendChild(root);
  const state = { selection: null };
  const redraw = () => draw(root, model.get("spec"), model, state);
  model.on("change:spec", () => {
    state.selection = null;
    redraw();
  });
  redraw();
  // Redraw only when the width changes: the observer also reports the first layout.
  let lastWidth = root.clientWidth;
  const observer = new ResizeObserver(() => {
    if (root.clientWidth !== lastWidth) {
      lastWidth = root.clientWidth;
      redraw();
    }
  });
  observer.observe(root);
  if (!window.quantlensChartPainted) {
    // The first task after the next frame runs once the chart is on screen: the browser tests
    // time the page by this mark, and app/head.html then starts loading plotly.
    window.quantlensChartPainted = true;
    requestAnimationFrame(() => {
      setTimeout(() => {
        performance.mark("quantlens:first-chart-painted");
        window.dispatchEvent(new CustomEvent("quantlens:chart-drawn"));
      }, 0);
    });
  }
  return () => observer.disconnect();
}

export default { render };
