// podium charts: a small SVG plotting library, served with the board (no dependencies, no CDN).
// A plot is a frame (scales, axes with ticks, axis labels) that a page draws marks into; every value goes into
// the document as text or an attribute, never as markup.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";

  // An SVG element: attributes (null, undefined and false are left out; "text" is the text content), children.
  function sv(tag, attrs, ...kids) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }

  // About n round tick values (1, 2, 5 x 10^k steps) from lo to hi.
  function ticks(lo, hi, n) {
    const span = hi - lo || Math.abs(hi) || 1;
    const raw = span / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const r = raw / mag;
    const step = (r >= 7.5 ? 10 : r >= 3.5 ? 5 : r >= 1.5 ? 2 : 1) * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  // The values' range with a margin of 6 % (10 % of the value, or 1, around a single value).
  function domain(values) {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const pad = lo === hi ? Math.abs(lo) * 0.1 || 1 : (hi - lo) * 0.06;
    return [lo - pad, hi + pad];
  }

  // A frame: { x: [x0, x1], y: [y0, y1], xLabel, yLabel, title, attrs (on the <svg>) }. Returns the svg, the
  // scales x(v) and y(v), add(mark) and the two reference lines a deployer reads: vline / hline at a value.
  function plot(opts) {
    const W = opts.width || 820, H = opts.height || 380, L = 64, R = 20, T = 16, B = 44;
    const [x0, x1] = opts.x, [y0, y1] = opts.y;
    const x = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
    const y = (v) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
    const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", ...opts.attrs }, sv("title", { text: opts.title }));
    svg.append(sv("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
    svg.append(sv("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
    for (const t of ticks(x0, x1, 6)) {
      if (t < x0 || t > x1) continue;
      svg.append(sv("line", { class: "axis", x1: x(t), y1: H - B, x2: x(t), y2: H - B + 4 }));
      svg.append(sv("text", { x: x(t), y: H - B + 16, "text-anchor": "middle", text: +t.toPrecision(6) }));
    }
    for (const t of ticks(y0, y1, 5)) {
      if (t < y0 || t > y1) continue;
      svg.append(sv("line", { class: "axis", x1: L - 4, y1: y(t), x2: L, y2: y(t) }));
      svg.append(sv("text", { x: L - 7, y: y(t) + 4, "text-anchor": "end", text: +t.toPrecision(6) }));
    }
    svg.append(sv("text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle", text: opts.xLabel }));
    svg.append(sv("text", { x: 14, y: (T + H - B) / 2, transform: `rotate(-90 14 ${(T + H - B) / 2})`,
      "text-anchor": "middle", text: opts.yLabel }));
    const add = (mark) => svg.append(mark);
    return {
      svg, x, y, add,
      bottom: H - B,
      vline(v, cls, label) {
        add(sv("line", { class: cls, x1: x(v), y1: T, x2: x(v), y2: H - B, "data-limit": v }));
        add(sv("text", { x: x(v) + 4, y: T + 10, text: label }));
      },
      hline(v, cls, label) {
        add(sv("line", { class: cls, x1: L, y1: y(v), x2: W - R, y2: y(v), "data-limit": v }));
        add(sv("text", { x: W - R - 4, y: y(v) - 4, "text-anchor": "end", text: label }));
      },
    };
  }

  // A five-pointed star centred on (cx, cy): the points of an SVG polygon.
  function star(cx, cy, outer, inner) {
    const pts = [];
    for (let i = 0; i < 10; i++) {
      const rad = i % 2 ? inner : outer, a = (Math.PI / 5) * i - Math.PI / 2;
      pts.push(`${cx + rad * Math.cos(a)},${cy + rad * Math.sin(a)}`);
    }
    return pts.join(" ");
  }

  window.podiumCharts = { sv, ticks, domain, plot, star };
})();
