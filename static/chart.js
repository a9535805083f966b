/* A small SVG line chart of P(fake) per sampled frame, with the decision threshold.
   No library: the page must work offline. Exposes window.dfChart.scoreChart(frames, threshold). */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 220, L = 44, R = 12, T = 12, B = 34;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scoreChart(frames, threshold) {
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, class: "score-chart", role: "img",
                           "aria-label": "P(fake) of each sampled frame over time"});
    const xs = frames.map((f, i) => (f.time_s === null || f.time_s === undefined ? i : f.time_s));
    const xmin = Math.min(...xs, 0);
    const xmax = Math.max(...xs, xmin + 1e-6);
    const px = (x) => L + (W - L - R) * (x - xmin) / (xmax - xmin || 1);
    const py = (y) => T + (H - T - B) * (1 - y);
    const usesTime = frames.length && frames[0].time_s !== null && frames[0].time_s !== undefined;

    for (const y of [0, 0.25, 0.5, 0.75, 1]) {
      svg.appendChild(el("line", {x1: L, x2: W - R, y1: py(y), y2: py(y), class: "grid"}));
      svg.appendChild(el("text", {x: L - 6, y: py(y) + 4, class: "axis", "text-anchor": "end"},
                         y.toFixed(2)));
    }
    const ticks = 5;
    for (let i = 0; i <= ticks; i++) {
      const x = xmin + (xmax - xmin) * i / ticks;
      svg.appendChild(el("text", {x: px(x), y: H - B + 16, class: "axis", "text-anchor": "middle"},
                         usesTime ? `${x.toFixed(1)}s` : String(Math.round(x))));
    }
    svg.appendChild(el("text", {x: (L + W - R) / 2, y: H - 2, class: "axis",
                                "text-anchor": "middle"}, usesTime ? "time" : "sampled frame"));
    svg.appendChild(el("line", {x1: L, x2: W - R, y1: py(threshold), y2: py(threshold),
                                class: "threshold"}));
    svg.appendChild(el("text", {x: W - R, y: py(threshold) - 4, class: "axis threshold-label",
                                "text-anchor": "end"}, `threshold ${threshold.toFixed(2)}`));

    let path = "";
    let pen = false;
    frames.forEach((f, i) => {
      if (f.score === null || f.score === undefined) { pen = false; return; }
      path += `${pen ? "L" : "M"}${px(xs[i]).toFixed(1)},${py(f.score).toFixed(1)} `;
      pen = true;
    });
    if (path) svg.appendChild(el("path", {d: path.trim(), class: "line"}));
    frames.forEach((f, i) => {
      if (f.score === null || f.score === undefined) {
        const miss = el("line", {x1: px(xs[i]), x2: px(xs[i]), y1: py(0), y2: py(0) - 6,
                                 class: "noface"});
        miss.appendChild(el("title", {}, `frame ${f.frame}: no face`));
        svg.appendChild(miss);
        return;
      }
      const dot = el("circle", {cx: px(xs[i]), cy: py(f.score), r: 3.5,
                                class: f.score >= threshold ? "dot fake" : "dot real"});
      dot.appendChild(el("title", {}, `frame ${f.frame}` +
        (usesTime ? ` (${xs[i].toFixed(2)} s)` : "") + `: P(fake) ${f.score.toFixed(3)}`));
      svg.appendChild(dot);
    });
    return svg;
  }

  window.dfChart = {scoreChart};
})();
