// podium board: the pages, drawn from the JSON endpoints; the charts with static/charts.js (SVG, no CDN).
// Every value is put into the document as text (textContent, setAttribute), never as markup.
"use strict";
(function () {
  const charts = window.podiumCharts; // static/charts.js, loaded first
  const sv = charts.sv;
  // What the page shows now, for people and for tests (read by tests/integration/test_board_browser.py).
  const state = { conn: "connecting", seqs: [], lastSeq: 0, data: null, loads: 0 };
  window.podiumBoard = state;

  // ------------------------------------------------------------------ DOM helpers

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
  }
  function append(e, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, kids);
    return e;
  }
  function main(...kids) {
    const m = document.getElementById("main");
    m.replaceChildren();
    append(m, kids);
  }
  const short = (h) => (h ? String(h).slice(0, 12) : "–");
  function num(v, digits) {
    if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
    return Number(v).toFixed(digits);
  }
  function when(t) {
    if (!t) return "–";
    const d = new Date(t * 1000);
    return d.toLocaleDateString() + " " + d.toLocaleTimeString();
  }
  function age(t) {
    if (!t) return "";
    const s = Math.max(0, Date.now() / 1000 - t);
    return s < 90 ? Math.round(s) + " s ago" : s < 5400 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
  }
  function table(headers, rows, attrs) {
    return el(
      "table",
      attrs,
      el("thead", null, el("tr", null, headers.map((h) => el("th", { class: h[1] || null }, h[0])))),
      el("tbody", null, rows)
    );
  }

  // ------------------------------------------------------------------ connection

  function setConn(s) {
    state.conn = s;
    document.body.dataset.conn = s;
    document.getElementById("conn").textContent =
      s === "live" ? "live" : s === "reconnecting" ? "reconnecting…" : "connecting…";
  }

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) {
      let why = r.status + " " + r.statusText;
      try { why = (await r.json()).error || why; } catch (e) { /* not JSON */ }
      const err = new Error(why);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }

  // One EventSource; reopened (with the last seq seen) when the server closes it or is away.
  function live(params, on) {
    let es = null;
    let timer = null;
    function open() {
      es = new EventSource("/api/events?" + new URLSearchParams(params()).toString());
      es.addEventListener("status", (e) => {
        const s = JSON.parse(e.data).state;
        setConn(s === "live" ? "live" : s === "connecting" ? "connecting" : "reconnecting");
      });
      es.addEventListener("update", (e) => on.update(JSON.parse(e.data)));
      es.addEventListener("refreshed", (e) => on.refreshed && on.refreshed(JSON.parse(e.data)));
      es.addEventListener("reset", () => on.reset && on.reset());
      es.onopen = () => on.open && on.open();
      es.onerror = () => {
        setConn("reconnecting");
        if (es.readyState === EventSource.CLOSED) {
          es.close();
          clearTimeout(timer);
          timer = setTimeout(open, 1000);
        }
      };
    }
    open();
  }

  // ------------------------------------------------------------------ the Pareto chart (SVG, charts.js)

  const same = (a, b) => a && b && a.trial_key_hash === b.trial_key_hash && a.benchmark_key === b.benchmark_key;

  // Quality vs latency: every candidate (excluded ones hollow, doubtful ones ringed), the Pareto front of the
  // competing ones, the chosen one (★), the challenger (ring), the latency limit; p99 whiskers when it holds p99.
  function paretoChart(sel, cfg) {
    const rows = sel.candidates.map((c) => [c, false]).concat(sel.excluded.map((c) => [c, true]));
    const maximize = !cfg || cfg.objective.direction !== "minimize";
    const limit = cfg ? cfg.max_latency_ms : null;
    const onP99 = cfg && cfg.limit_on === "p99";
    const xsAll = rows.map(([c]) => c.latency_ms);
    if (onP99) rows.forEach(([c]) => c.p99_ms !== null && c.p99_ms !== undefined && xsAll.push(c.p99_ms));
    if (limit) xsAll.push(limit);
    const fig = sel.latency && sel.latency.statistic ? sel.latency.statistic : "latency";
    const p = charts.plot({
      x: charts.domain(xsAll), y: charts.domain(rows.map(([c]) => c.f1_score)),
      title: "quality vs latency", attrs: { class: "pareto", "data-points": rows.length },
      xLabel: `${fig} at batch ${(sel.latency && sel.latency.batch_size) || "?"} (ms, ${(sel.latency && sel.latency.across_runs) || ""} across runs)`,
      yLabel: (cfg && cfg.objective.metric) || "objective",
    });
    const { x, y } = p;
    if (limit) p.vline(limit, "sla", `max ${onP99 ? "p99" : "latency"} ${limit} ms`);
    if (onP99) {
      for (const [c] of rows) {
        if (c.p99_ms === null || c.p99_ms === undefined) continue;
        p.add(sv("line", { class: "whisker", x1: x(c.latency_ms), y1: y(c.f1_score), x2: x(c.p99_ms), y2: y(c.f1_score) }));
      }
    }
    const front = [];
    let bestY = null;
    for (const c of [...sel.candidates].sort((a, b) => a.latency_ms - b.latency_ms || (maximize ? b.f1_score - a.f1_score : a.f1_score - b.f1_score))) {
      if (bestY === null || (maximize ? c.f1_score > bestY : c.f1_score < bestY)) {
        front.push(c);
        bestY = c.f1_score;
      }
    }
    if (front.length > 1) {
      p.add(sv("polyline", { class: "front", points: front.map((c) => `${x(c.latency_ms)},${y(c.f1_score)}`).join(" ") }));
    }
    for (const [c, out] of rows) {
      const cls = ["point", out ? "excluded" : null, c.unstable ? "unstable" : null, c.pending ? "pending" : null].filter(Boolean).join(" ");
      p.add(sv("circle", {
        class: cls, cx: x(c.latency_ms), cy: y(c.f1_score), r: 4,
        "data-trial": c.trial_key_hash, "data-key": c.benchmark_key, "data-x": c.latency_ms, "data-y": c.f1_score,
      }, sv("title", { text: `${short(c.trial_key_hash)} ${c.backbone || ""} · ${num(c.f1_score, 4)} · ${num(c.latency_ms, 3)} ms${c.excluded ? " · " + c.excluded : ""}` })));
    }
    if (sel.challenger) {
      const c = sel.challenger;
      p.add(sv("circle", { class: "challenger", cx: x(c.latency_ms), cy: y(c.f1_score), r: 9, "data-trial": c.trial_key_hash }));
    }
    const b = sel.best;
    if (b) {
      p.add(sv("polygon", { class: "chosen", points: charts.star(x(b.latency_ms), y(b.f1_score), 9, 4), "data-trial": b.trial_key_hash, "data-key": b.benchmark_key },
        sv("title", { text: `chosen: ${short(b.trial_key_hash)} ${b.backbone || ""}` })));
    }
    return el("div", { class: "chart" }, p.svg,
      el("p", { class: "muted" }, `★ chosen · ring: challenger within noise · hollow: not competing · red ring: in doubt · line: Pareto front${limit ? " · dashed: limit" : ""}${onP99 ? " · whisker: p99" : ""}`));
  }

  // ------------------------------------------------------------------ latency vs throughput (SVG, charts.js)

  const PALETTE = ["#1565c0", "#2e7d32", "#8e24aa", "#00838f", "#6d4c41", "#c2185b", "#546e7a", "#9e9d24"];

  // Per candidate with load levels: p99 (solid) and p50 (dashed) against the throughput reached, one polyline
  // per mode (closed loop cN, open loop rR); the p99 budget as a dashed line; ▲ its throughput at the budget.
  function loadChart(load, sel) {
    const sla = load.sla_p99_ms;
    const curves = load.curves;
    const xs = [0], ys = [0];
    for (const c of curves) {
      for (const p of c.levels) {
        xs.push(p.throughput_per_s);
        ys.push(p.p99_ms);
        if (p.p50_ms !== null && p.p50_ms !== undefined) ys.push(p.p50_ms);
      }
      if (c.throughput_at_sla_per_s) xs.push(c.throughput_at_sla_per_s);
    }
    if (sla) ys.push(sla);
    const plot = charts.plot({
      x: [0, charts.domain(xs)[1]], y: [0, charts.domain(ys)[1]],
      title: "latency vs throughput", attrs: { class: "load", "data-curves": curves.length },
      xLabel: "throughput (requests/s)", yLabel: "latency (ms): p99 solid, p50 dashed",
    });
    const { x, y } = plot;
    if (sla) plot.hline(sla, "sla", `p99 budget ${sla} ms`);
    const legend = [];
    curves.forEach((c, i) => {
      const chosen = same(c, sel && sel.best);
      const color = chosen ? "#e67e00" : PALETTE[i % PALETTE.length];
      const name = `${short(c.trial_key_hash)} ${c.backbone || ""}`;
      for (const mode of ["concurrency", "request_rate"]) {
        const pts = c.levels.filter((p) => p.mode === mode);
        if (!pts.length) continue;
        const common = { "data-run": c.benchmark_run_id, "data-trial": c.trial_key_hash, "data-mode": mode, stroke: color };
        const p50 = pts.filter((p) => p.p50_ms !== null && p.p50_ms !== undefined);
        if (p50.length) {
          plot.add(sv("polyline", { ...common, class: "curve p50", points: p50.map((p) => `${x(p.throughput_per_s)},${y(p.p50_ms)}`).join(" ") }));
        }
        plot.add(sv("polyline", { ...common, class: "curve p99" + (chosen ? " chosen-curve" : ""),
          "data-x": pts.map((p) => p.throughput_per_s).join(" "), "data-y": pts.map((p) => p.p99_ms).join(" "),
          points: pts.map((p) => `${x(p.throughput_per_s)},${y(p.p99_ms)}`).join(" ") },
          sv("title", { text: `${name} · ${mode === "concurrency" ? "closed loop" : "open loop"} · p99` })));
        for (const p of pts) {
          plot.add(sv("circle", { class: "level", cx: x(p.throughput_per_s), cy: y(p.p99_ms), r: 3, fill: color, "data-level": p.level },
            sv("title", { text: `${name} · ${p.level}: ${num(p.throughput_per_s, 1)}/s · p50 ${num(p.p50_ms, 3)} ms · p99 ${num(p.p99_ms, 3)} ms` +
              (p.achieved_per_s !== undefined ? ` · achieved ${num(p.achieved_per_s, 1)}/s` : "") })));
        }
      }
      const t = c.throughput_at_sla_per_s;
      if (t) {
        const ty = sla ? y(sla) : plot.bottom;
        plot.add(sv("polygon", { class: "at-sla", fill: color, "data-run": c.benchmark_run_id, "data-x": t,
          points: `${x(t)},${ty - 7} ${x(t) - 5},${ty + 2} ${x(t) + 5},${ty + 2}` },
          sv("title", { text: `${name}: ${num(t, 1)} requests/s at the p99 budget` })));
      }
      if (legend.length < 12) legend.push(el("span", { class: "legend" }, el("span", { class: "swatch", style: `background:${color}` }), chosen ? "★ " + name : name));
    });
    return el("div", { class: "chart" }, plot.svg,
      el("p", { class: "muted" }, legend, curves.length > 12 ? ` … and ${curves.length - 12} more` : "",
        ` · ▲ throughput at the p99 budget${sla ? "" : " (budget not in this board's benchmark.yaml)"}`));
  }

  // ------------------------------------------------------------------ the study page

  function why(scope, cfg) {
    const u = scope.update;
    const s = scope.selection;
    const items = [];
    const add = (k, v) => v !== null && v !== undefined && v !== "" && items.push(el("dt", null, k), el("dd", null, v));
    add("policy", (u && u.policy) || (cfg && cfg.policy));
    add("statistic", (u && u.statistic) || (s && s.latency && s.latency.statistic));
    add("across runs", (u && u.aggregation) || (cfg && cfg.across_runs));
    if (cfg && cfg.max_latency_ms) add("SLA", `${cfg.limit_on === "p99" ? "p99" : "figure"} ≤ ${cfg.max_latency_ms} ms`);
    if (cfg) add("promotion", `faster by ≥ ${Math.round(cfg.min_improvement * 100)} % at confidence ${cfg.confidence}, or better on ${cfg.objective.metric}`);
    add("last change", u ? `${u.reason} (seq ${u.seq}, ${when(u.published_at)})` : null);
    add("note", (u && u.note) || (s && s.note));
    const ch = (u && u.challenger) || (s && s.challenger);
    if (ch) add("challenger", `${short(ch.trial_key_hash)} ${ch.backbone || ""} · ${num(ch.latency_ms, 3)} ms · within noise`);
    if (u) add("candidates", `${u.candidates} competing, ${u.excluded || 0} not competing, ${u.unstable_candidates || 0} in doubt`);
    return el("dl", { class: "why" }, items);
  }

  function bestCard(scope, metric) {
    const b = (scope.update && scope.update.best) || (scope.selection && scope.selection.best);
    if (!b) return el("p", { class: "muted" }, "No best model published for this scope (its candidates were removed).");
    return el("div", { class: "best", "data-trial": b.trial_key_hash },
      el("strong", { class: "best-trial mono" }, short(b.trial_key_hash)), " ", b.backbone || "",
      " · ", metric, " ", el("strong", { class: "best-quality" }, num(b.f1_score, 4)),
      " · ", el("strong", { class: "best-latency" }, num(b.latency_ms, 3)), " ms ", el("span", { class: "muted" }, b.latency_figure || ""),
      b.p99_ms !== null && b.p99_ms !== undefined ? ` · p99 ${num(b.p99_ms, 3)} ms` : "",
      ` · ${b.benchmark_runs_count} run(s)`);
  }

  // The run id, as a link to its MLflow page when the board knows the UI (only http(s) addresses are links).
  function runCell(id, links) {
    const href = links && links[id];
    return el("td", { class: "mono" }, href && /^https?:\/\//.test(href)
      ? el("a", { href, class: "run-link", target: "_blank", rel: "noopener noreferrer", "data-run": id }, id) : id);
  }

  function candidatesTable(sel, metric, links) {
    const rows = [];
    sel.candidates.concat(sel.excluded).forEach((c, i) => {
      const flags = [];
      if (same(c, sel.best)) flags.push(el("span", { class: "flag chosen-flag" }, "★ chosen"));
      if (same(c, sel.challenger)) flags.push(el("span", { class: "flag" }, "↑ challenger"));
      if (c.unstable) flags.push(el("span", { class: "flag" }, c.doubt || "unstable"));
      if (c.excluded) flags.push(el("span", { class: "flag" }, "out: " + c.excluded));
      rows.push(el("tr", { class: same(c, sel.best) ? "chosen" : c.excluded ? "excluded" : null, "data-trial": c.trial_key_hash },
        el("td", { class: "num" }, c.excluded ? "–" : i + 1),
        el("td", { class: "mono", title: c.trial_key_hash }, short(c.trial_key_hash)),
        el("td", { class: "backbone" }, c.backbone || ""),
        el("td", { class: "num" }, num(c.f1_score, 4)),
        el("td", { class: "num" }, num(c.latency_ms, 3)),
        el("td", { class: "num" }, num(c.p99_ms, 3)),
        el("td", { class: "num" }, c.benchmark_runs_count),
        el("td", null, flags, el("span", { class: "muted" }, c.latency_figure || "")),
        runCell(c.benchmark_run_id, links),
        runCell(c.trial_run_id, links)));
    });
    return el("div", { class: "scroll" }, table(
      [["#", "num"], ["trial"], ["backbone"], [metric, "num"], ["latency ms", "num"], ["p99 ms", "num"], ["runs", "num"],
        ["flags"], ["MLflow benchmark run"], ["MLflow trial run"]], rows, { class: "candidates" }));
  }

  function historyTable(history) {
    return el("div", { class: "scroll" }, table(
      [["seq", "num"], ["published"], ["config"], ["reason"], ["best"], ["latency ms", "num"], ["candidates", "num"], ["note"]],
      history.map((u) => el("tr", { "data-seq": u.seq },
        el("td", { class: "num" }, u.seq), el("td", null, when(u.published_at)),
        el("td", { class: "mono" }, short(u.benchmark_config_hash) || "legacy"), el("td", null, u.reason),
        el("td", { class: "mono" }, u.best ? short(u.best.trial_key_hash) : "–"),
        el("td", { class: "num" }, u.best ? num(u.best.latency_ms, 3) : "–"),
        el("td", { class: "num" }, u.candidates), el("td", null, u.note || ""))),
      { class: "history" }));
  }

  function renderStudy(data) {
    const cfg = data.selection_config;
    const metric = (cfg && cfg.objective.metric) || "objective";
    const sels = data.selections || {};
    // an update the candidates' read began before is drawn over them (its best may be missing from the read)
    for (const scope of data.scopes) {
      if (scope.selection && scope.update && scope.update.seq > (sels.seq_read || 0)) scope.selection = withUpdate(scope.selection, scope.update);
    }
    main(
      el("h1", null, data.label || "study " + short(data.study_key_hash)),
      el("p", { class: "muted" }, el("span", { class: "mono" }, data.study_key_hash), ` · seq ${data.seq}`,
        sels.loaded_at ? ` · candidates read from MLflow ${age(sels.loaded_at)}` : " · reading candidates from MLflow…",
        sels.error ? el("span", { class: "flag" }, sels.error) : ""),
      data.scopes.length ? null : el("p", { class: "muted" }, "Nothing published for this study yet."),
      data.scopes.map((scope) => scopeSection(scope, cfg, metric)),
      el("h2", null, "History of changes"),
      el("div", { id: "history" }, historyTable(data.history)));
  }

  function scopeSection(scope, cfg, metric) {
    const sel = scope.selection;
    return el("section", { class: "card scope", "data-config": scope.benchmark_config_hash || "legacy" },
      el("h2", null, scope.label || "config " + (short(scope.benchmark_config_hash) || "legacy")),
      liveParts(scope, cfg, metric),
      sel ? [el("h3", null, "Quality vs latency"), paretoPart(sel, cfg),
        el("h3", null, `Candidates (${sel.candidates.length} competing, ${sel.excluded.length} not)`),
        scope.load && scope.load.curves.length ? [el("h3", null, `Latency vs throughput (${scope.load.curves.length} with load levels)`),
          loadChart(scope.load, sel)] : null,
        candidatesTable(sel, metric, scope.links)] : el("p", { class: "muted" }, "Candidates not read from MLflow yet."));
  }

  // The chart, and a note while it holds points from an update that the candidates read do not hold yet.
  function paretoPart(sel, cfg) {
    const pending = sel.candidates.filter((c) => c.pending).length;
    return el("div", { class: "pareto-part" }, paretoChart(sel, cfg),
      pending ? el("p", { class: "muted pending-note" }, `${pending} point(s) from the latest update; the table follows when the candidates are read again from MLflow`) : null);
  }

  // An update's best and challenger, drawn at once on the candidates last read (its figures are the aggregator's,
  // from the same runs): one the candidates read do not hold yet is a pending point until the store is read again.
  function withUpdate(sel, u) {
    const next = { ...sel, best: u.best, challenger: u.challenger || null, candidates: sel.candidates.slice(), excluded: sel.excluded.slice() };
    for (const c of [u.best, u.challenger]) {
      if (!c) continue;
      const i = next.candidates.findIndex((x) => same(x, c));
      if (i >= 0) {
        next.candidates[i] = { ...next.candidates[i], ...c };
      } else {
        next.excluded = next.excluded.filter((x) => !same(x, c));
        next.candidates.unshift({ ...c, pending: true });
      }
    }
    return next;
  }

  // What an update changes at once, beside the chart (the table follows when the candidates are read again).
  function liveParts(scope, cfg, metric) {
    return el("div", { class: "live-parts" }, el("h3", null, "Best now"), bestCard(scope, metric), el("h3", null, "Why"), why(scope, cfg));
  }

  function applyUpdate(d, u) {
    const cfg = d.selection_config;
    const metric = (cfg && cfg.objective.metric) || "objective";
    const key = u.benchmark_config_hash || "legacy";
    const scope = d.scopes.find((s) => (s.benchmark_config_hash || "legacy") === key);
    d.history.unshift(u);
    if (d.history.length > 200) d.history.length = 200; // as many as the server sends
    d.seq = Math.max(d.seq, u.seq);
    const section = scope && [...document.querySelectorAll("section.scope")].find((e) => e.dataset.config === key);
    if (!section) {
      d.scopes.push({ benchmark_config_hash: u.benchmark_config_hash, label: u.label, update: u, selection: null });
      renderStudy(d);
      return;
    }
    scope.update = u;
    section.querySelector(".live-parts").replaceWith(liveParts(scope, cfg, metric));
    if (scope.selection) { // the chart at once; the 1,000-row table is redrawn when the candidates are read again
      scope.selection = withUpdate(scope.selection, u);
      section.querySelector(".pareto-part").replaceWith(paretoPart(scope.selection, cfg));
    }
    document.getElementById("history").replaceChildren(historyTable(d.history));
  }

  async function studyPage() {
    const id = decodeURIComponent(location.pathname.split("/")[2] || "");
    let loading = null;
    async function load() {
      state.data = await getJSON("/api/studies/" + encodeURIComponent(id));
      state.loads += 1;
      renderStudy(state.data);
      document.body.dataset.loads = state.loads;
    }
    function reload() {
      loading = (loading || Promise.resolve()).then(load).catch((e) => setConn("reconnecting"));
    }
    // a study not published yet (404) is waited for: the page follows it from its first result
    for (;;) {
      try {
        await load();
        break;
      } catch (e) {
        const waiting = e.status === 404;
        main(el("p", { class: "flag", id: waiting ? "waiting" : "failed" },
          String(e.message || e) + (waiting ? "; waiting for its first result…" : "")));
        if (!waiting) return;
        await new Promise((done) => setTimeout(done, 2000));
      }
    }
    state.lastSeq = state.data.seq;
    document.body.dataset.seq = state.lastSeq;
    let opened = 0;
    // loaded: when the candidates shown were read (a re-read that ends before the stream listens is told at once)
    const params = () => ({
      study: state.data.study_key_hash,
      after: state.lastSeq,
      loaded: state.data.selections.loaded_at ?? "",
    });
    live(params, {
      update(u) {
        if (u.seq <= state.lastSeq) return; // seen already
        state.seqs.push(u.seq);
        state.lastSeq = u.seq;
        document.body.dataset.seq = u.seq;
        applyUpdate(state.data, u);
      },
      refreshed() { reload(); },
      reset() { reload(); },
      open() { if (opened++) reload(); }, // reopened: what changed meanwhile beyond the updates
    });
  }

  // ------------------------------------------------------------------ the studies page

  function studyRow(s) {
    const b = s.best;
    return el("tr", { "data-study": s.study_key_hash },
      el("td", null, el("a", { href: "/studies/" + encodeURIComponent(s.study_key_hash) }, s.label || short(s.study_key_hash)),
        " ", el("span", { class: "mono muted" }, short(s.study_key_hash))),
      el("td", { class: "mono best-trial" }, b ? short(b.trial_key_hash) : "–"),
      el("td", null, b ? b.backbone || "" : ""),
      el("td", { class: "num" }, b ? num(b.f1_score, 4) : "–"),
      el("td", { class: "num" }, b ? num(b.latency_ms, 3) : "–"),
      el("td", null, s.last_change ? `${s.reason} · ${age(s.last_change)}` : "–"),
      el("td", { class: "num" }, s.candidates),
      el("td", { class: "num" }, s.in_flight === null ? "?" : s.in_flight),
      el("td", { class: "num" }, s.dead_letters === null ? "?" : s.dead_letters),
      el("td", { class: "num seq" }, s.seq));
  }

  async function studiesPage() {
    const rows = new Map();
    async function load() {
      const data = await getJSON("/api/studies");
      state.data = data;
      rows.clear();
      data.studies.forEach((s) => rows.set(s.study_key_hash, s));
      draw();
    }
    function draw() {
      const list = [...rows.values()].sort((a, b) => (b.last_change || 0) - (a.last_change || 0));
      main(el("h1", null, `Studies (${list.length})`),
        list.length ? table([["study"], ["best"], ["backbone"], ["quality", "num"], ["latency ms", "num"], ["last change"],
          ["candidates", "num"], ["in flight", "num"], ["dead letters", "num"], ["seq", "num"]], list.map(studyRow), { class: "studies" })
          : el("p", { class: "muted" }, "No study has a published best model yet."));
    }
    try { await load(); } catch (e) { main(el("p", { class: "flag" }, String(e.message || e))); }
    live(() => ({}), {
      open() { load().catch(() => setConn("reconnecting")); },
      update(u) {
        const s = rows.get(u.study_key_hash);
        if (!s) return void load().catch(() => {});
        if (u.seq <= s.seq) return;
        Object.assign(s, { seq: u.seq, best: u.best, reason: u.reason, last_change: u.published_at, label: s.label || u.label, candidates: u.candidates });
        draw();
      },
      refreshed(r) { if (!r.study_key_hash) load().catch(() => {}); },
    });
  }

  // ------------------------------------------------------------------ the workers page

  function kvTable(items, preferred) {
    const cols = [...new Set(preferred.concat(items.flatMap((i) => Object.keys(i))))].filter((c) => items.some((i) => c in i));
    return table(cols.map((c) => [c]), items.map((i) => el("tr", null, cols.map((c) => el("td", null, i[c] === undefined ? "" : typeof i[c] === "object" ? JSON.stringify(i[c]) : i[c])))));
  }

  async function workersPage() {
    async function tick() {
      try {
        const d = await getJSON("/api/workers");
        setConn(d.redis_error ? "reconnecting" : "live");
        if (d.redis_error) return;
        main(el("h1", null, "Workers"),
          el("h2", null, `Ready workers (${d.workers.length})`),
          d.workers.length ? kvTable(d.workers, ["name", "target", "host", "warmed", "store", "ready_at"]) : el("p", { class: "muted" }, "No worker is ready."),
          el("h2", null, `Benchmarks running (${d.running.length})`),
          d.running.length ? kvTable(d.running, ["benchmark_key", "phase", "progress", "worker", "target", "running_s", "heartbeat_age_s"]) : el("p", { class: "muted" }, "None."),
          el("h2", null, `Requests in flight (${d.in_flight.length})`),
          d.in_flight.length ? kvTable(d.in_flight, ["request_id", "benchmark_key", "queue", "age_s", "worker", "worker_alive"]) : el("p", { class: "muted" }, "None."),
          el("h2", null, "Queues"),
          Object.keys(d.queues || {}).length
            ? kvTable(Object.entries(d.queues).map(([q, n]) => ({ queue: q, waiting: n })), ["queue", "waiting"])
            : el("p", { class: "muted" }, "None yet (a queue appears with its first request)."),
          el("p", { class: "muted" }, `${(d.stale_locks || []).length} stale lock(s) · ${d.dead_letters ? d.dead_letters.count : "?"} dead letter(s) · read ${when(d.at)}`));
      } catch (e) {
        setConn("reconnecting");
      }
    }
    await tick();
    setInterval(tick, 2000);
  }

  const pages = { studies: studiesPage, study: studyPage, workers: workersPage };
  (pages[document.body.dataset.page] || studiesPage)();
})();
