/**
 * The streaming UI's page, its style and its script, as strings: a TypeScript module is compiled
 * into dist/ with the rest, so the server finds them from the sources and once built alike (tsc
 * copies no other file). Plain DOM and SVG, no framework and no build step; the script polls the
 * server's JSON endpoints (./server.ts) and draws from them.
 */

export const PAGE_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dstream</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header><a href="#/" class="brand">dstream</a><span id="pipeline"></span><span id="where"></span><span id="updated"></span></header>
<main id="main"><p class="muted">Loading…</p></main>
<script src="/app.js"></script>
</body>
</html>
`;

export const STYLE_CSS = String.raw`
:root { --fg: #1d2330; --muted: #6b7280; --line: #e3e6ec; --bg: #f7f8fa; --accent: #2563eb; --bad: #c62828; --warn: #d97706; --ok: #15803d; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 18px; align-items: baseline; padding: 10px 20px; background: #1d2330; color: #fff; }
header .brand { color: #fff; font-weight: 700; font-size: 18px; text-decoration: none; }
header span { color: #c8cdd8; }
#updated { margin-left: auto; font-size: 12px; }
main { padding: 16px 20px 40px; max-width: 1280px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
a { color: var(--accent); }
.muted { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 130px; }
.card b { display: block; font-size: 18px; }
.card span { color: var(--muted); font-size: 12px; }
.failed { border: 1px solid var(--bad); background: #fff3f3; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.failed h2 { color: var(--bad); margin-top: 0; }
.failed pre { white-space: pre-wrap; }
.charts { display: grid; grid-template-columns: 1fr 220px; gap: 6px 14px; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
.charts h3 { grid-column: 1 / span 2; margin: 8px 0 0; font-size: 13px; }
svg text { font-size: 11px; fill: var(--muted); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #eef0f4; font-weight: 600; }
td.l, th.l { text-align: left; }
tr.bad td { background: #fff3f3; }
.pager { display: flex; gap: 8px; align-items: center; margin: 8px 0; }
button, input { font: inherit; padding: 3px 10px; }
pre { background: #fff; border: 1px solid var(--line); padding: 8px; margin: 4px 0 10px; overflow: auto; max-height: 220px; font-size: 12px; }
.svgbox { background: #fff; border: 1px solid var(--line); border-radius: 6px; overflow: auto; }
.legend { display: flex; flex-wrap: wrap; gap: 12px; margin: 6px 0; font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
.bar:hover { opacity: 0.75; }
`;

export const APP_JS = String.raw`
'use strict';
var PALETTE = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#0891b2', '#db2777', '#65a30d', '#dc2626', '#4f46e5', '#0d9488'];
var SVG = 'http://www.w3.org/2000/svg';
var state = { status: null, timer: null, route: '' };

function h(tag, attrs) {
  var el = document.createElement(tag);
  for (var k in attrs || {}) {
    if (attrs[k] == null) continue;
    if (k === 'text') el.textContent = attrs[k];
    else if (k === 'onclick') el.onclick = attrs[k];
    else el.setAttribute(k, attrs[k]);
  }
  for (var i = 2; i < arguments.length; i++) {
    var c = arguments[i];
    if (c == null) continue;
    el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return el;
}
function s(tag, attrs, parent) {
  var el = document.createElementNS(SVG, tag);
  for (var k in attrs || {}) if (k === 'text') el.textContent = attrs[k]; else el.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(el);
  return el;
}
function title(el, text) { s('title', { text: text }, el); return el; }
function get(path) {
  return fetch(path, { cache: 'no-store' }).then(function (r) {
    return r.json().then(function (body) { if (!r.ok) throw new Error(body.error || r.statusText); return body; });
  });
}
function ms(n) { return n == null ? '–' : n >= 60000 ? (n / 60000).toFixed(1) + ' min' : n >= 1000 ? (n / 1000).toFixed(2) + ' s' : Math.round(n) + ' ms'; }
function num(n) { return n == null ? '–' : Number(n).toLocaleString('en-US'); }
function bytes(n) { return n == null ? '–' : n >= 1048576 ? (n / 1048576).toFixed(1) + ' MiB' : n >= 1024 ? (n / 1024).toFixed(1) + ' KiB' : n + ' B'; }
function time(t) { return t == null ? '–' : new Date(t).toLocaleTimeString(); }
function intervalEnd(k) {
  var c = state.status && state.status.status.clock;
  return c && k >= c.base ? c.epoch + (k - c.base + 1) * c.intervalMs : null;
}
function main() { return document.getElementById('main'); }
function show() {
  var m = main();
  m.replaceChildren.apply(m, Array.prototype.slice.call(arguments).filter(function (c) { return c != null; }));
}

function route() {
  var hash = location.hash || '#/';
  var m = /^#\/interval\/(\d+)/.exec(hash);
  var before = /[?&]before=(\d+)/.exec(hash);
  state.route = hash;
  clearTimeout(state.timer);
  var draw = m ? function () { return intervalPage(Number(m[1])); } : function () { return overview(before ? Number(before[1]) : null); };
  var tick = function () {
    var at = state.route;
    draw().catch(function (e) { show(h('p', { class: 'failed', text: 'Could not read the stream: ' + e.message })); }).then(function (again) {
      if (state.route !== at) return;
      var every = Math.max(1000, (state.status && state.status.status.clock && state.status.status.clock.intervalMs) || 2000);
      if (again !== false) state.timer = setTimeout(tick, every);
    });
  };
  tick();
}
window.addEventListener('hashchange', route);
window.addEventListener('load', route);

function readStatus() {
  return get('/api/status').then(function (st) {
    state.status = st;
    var p = st.status.pipeline;
    document.getElementById('pipeline').textContent = p ? 'pipeline ' + p.name : 'no stream yet';
    document.getElementById('where').textContent = st.where;
    document.getElementById('updated').textContent = 'read ' + new Date(st.status.at).toLocaleTimeString();
    return st;
  });
}

function failedBox(failed) {
  if (!failed) return null;
  return h('div', { class: 'failed', id: 'failed' },
    h('h2', { text: 'Interval ' + failed.interval + ' failed: the stream does not go on past it' }),
    h('p', null, h('a', { href: '#/interval/' + failed.interval, text: 'Open interval ' + failed.interval })),
    failed.failures.map(function (f) {
      return h('div', null,
        h('b', { text: f.stage + ' partition ' + f.partition + (f.kind === 'bad-record' ? ' (a bad record)' : ' (dead-lettered)') }),
        h('pre', { text: f.error }),
        h('p', null, h('b', { text: 'Next step: ' }), f.nextStep));
    }).reduce(function (d, el) { d.appendChild(el); return d; }, h('div')));
}

function overview(before) {
  return Promise.all([readStatus(), get('/api/intervals?limit=120'), get('/api/intervals?limit=25' + (before != null ? '&before=' + before : ''))]).then(function (r) {
    var st = r[0].status, recent = r[1], page = r[2];
    var pos = st.position;
    var cards = h('div', { class: 'cards' },
      card(st.clock ? ms(st.clock.intervalMs) : '–', 'interval length'),
      card(pos && pos.lastCommitted != null ? pos.lastCommitted : '–', 'last committed'),
      card(pos ? num(pos.next) : '–', 'intervals committed'),
      card(pos ? pos.behind : '–', 'behind (ended, not committed)'),
      card(st.running ? 'interval ' + st.running.interval : 'none', 'running'));
    var running = st.running ? h('p', null, 'Running interval ' + st.running.interval + ': ' + st.running.stages.map(function (g) { return g.id + (g.withoutTasks ? ' empty, no task' : ' ' + g.done + '/' + g.tasks + (g.failed ? ' (' + g.failed + ' failed)' : '')); }).join(', ')) : null;
    show(failedBox(r[0].failed), cards, running,
      h('h2', { text: 'The last ' + recent.intervals.length + ' intervals' }), charts(recent),
      h('h2', { text: 'Intervals, newest first' }), intervalTable(page, st),
      errorsSummary(st));
    return true;
  });
}
function card(value, label) { return h('div', { class: 'card' }, h('b', { text: String(value) }), h('span', { text: label })); }

function charts(page) {
  var rows = page.intervals.slice().reverse();
  var box = h('div', { class: 'charts', id: 'charts' });
  if (!rows.length) { box.appendChild(h('p', { class: 'muted', text: 'No interval is committed yet.' })); return box; }
  var len = page.intervalMs;
  [['Input rate (records/s)', 'inputRate', num, null], ['Processing time', 'processingMs', ms, len], ['Scheduling delay', 'schedulingDelayMs', ms, len]].forEach(function (c) {
    var values = rows.map(function (x) { return x[c[1]]; });
    var known = values.filter(function (v) { return v != null; });
    var avg = known.length ? known.reduce(function (a, b) { return a + b; }, 0) / known.length : null;
    box.appendChild(h('h3', { text: c[0] + (avg != null ? ' — mean ' + c[2](avg) : '') + (c[3] ? ', interval length ' + ms(c[3]) : '') }));
    var max = Math.max.apply(null, known.concat([c[3] || 0, 1])) * 1.1;
    box.appendChild(timeline(rows, values, max, c[2], c[3], c[1]));
    box.appendChild(histogram(known, max, c[2], c[3]));
  });
  return box;
}
function timeline(rows, values, max, fmt, line, name) {
  var W = 900, H = 130, L = 60, B = 18;
  var svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, width: '100%', height: H, 'data-chart': name });
  var x = function (i) { return L + (rows.length === 1 ? (W - L) / 2 : (i * (W - L - 10)) / (rows.length - 1)); };
  var y = function (v) { return H - B - (v / max) * (H - B - 8); };
  s('line', { x1: L, x2: W, y1: H - B, y2: H - B, stroke: '#ccc' }, svg);
  s('text', { x: L - 6, y: y(max / 1.1) + 4, 'text-anchor': 'end', text: fmt(max / 1.1) }, svg);
  s('text', { x: L - 6, y: H - B, 'text-anchor': 'end', text: '0' }, svg);
  if (line) {
    s('line', { x1: L, x2: W, y1: y(line), y2: y(line), stroke: '#dc2626', 'stroke-dasharray': '5 4' }, svg);
    s('text', { x: W - 4, y: y(line) - 4, 'text-anchor': 'end', text: 'interval ' + fmt(line), fill: '#dc2626' }, svg);
  }
  var pts = rows.map(function (r, i) { return values[i] == null ? null : x(i) + ',' + y(values[i]); }).filter(Boolean);
  s('polyline', { points: pts.join(' '), fill: 'none', stroke: '#2563eb', 'stroke-width': 1.5 }, svg);
  rows.forEach(function (r, i) {
    if (values[i] == null) return;
    var dot = s('circle', { cx: x(i), cy: y(values[i]), r: 3, fill: line && values[i] > line ? '#dc2626' : '#2563eb', class: 'bar', style: 'cursor:pointer' }, svg);
    title(dot, 'interval ' + r.interval + ': ' + fmt(values[i]));
    dot.addEventListener('click', function () { location.hash = '#/interval/' + r.interval; });
  });
  s('text', { x: L, y: H - 4, text: 'interval ' + rows[0].interval }, svg);
  s('text', { x: W - 4, y: H - 4, 'text-anchor': 'end', text: 'interval ' + rows[rows.length - 1].interval }, svg);
  return svg;
}
function histogram(values, max, fmt, line) {
  var W = 220, H = 130, B = 18, N = 10;
  var svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, width: '100%', height: H });
  var bins = new Array(N).fill(0);
  values.forEach(function (v) { bins[Math.min(N - 1, Math.floor((v / max) * N))]++; });
  var most = Math.max.apply(null, bins.concat([1]));
  var bh = (H - B - 8) / N;
  bins.forEach(function (n, i) {
    var top = H - B - (i + 1) * bh;
    title(s('rect', { x: 0, y: top + 1, width: (n / most) * (W - 40), height: bh - 2, fill: '#93c5fd', class: 'bar' }, svg), n + ' intervals in ' + fmt((i * max) / N) + ' – ' + fmt(((i + 1) * max) / N));
    if (n) s('text', { x: (n / most) * (W - 40) + 4, y: top + bh / 2 + 4, text: String(n) }, svg);
  });
  if (line) s('line', { x1: 0, x2: W, y1: H - B - (line / max) * (H - B - 8), y2: H - B - (line / max) * (H - B - 8), stroke: '#dc2626', 'stroke-dasharray': '5 4' }, svg);
  s('text', { x: 0, y: H - 4, text: 'intervals per bin' }, svg);
  return svg;
}

function intervalTable(page, st) {
  var errs = {};
  st.errors.intervals.forEach(function (e) { errs[e.interval] = e; });
  var outputs = {};
  page.intervals.forEach(function (r) { Object.keys(r.outputs).forEach(function (o) { outputs[o] = true; }); });
  var names = Object.keys(outputs).sort();
  var head = h('tr', null, h('th', { class: 'l', text: 'Interval' }), h('th', { class: 'l', text: 'Ended' }), h('th', { text: 'Uploads' }), h('th', { text: 'Records in' }),
    names.map(function (n) { return h('th', { text: 'out: ' + n }); }).reduce(frag, document.createDocumentFragment()),
    h('th', { text: 'Quarantined' }), h('th', { text: 'Tasks' }), h('th', { text: 'Speculative' }), h('th', { text: 'Recomputed' }), h('th', { text: 'Failures' }),
    h('th', { text: 'Processing' }), h('th', { text: 'Sched. delay' }));
  var body = h('tbody');
  page.intervals.forEach(function (r) {
    var e = errs[r.interval];
    var failures = r.fetchFailures + (e ? e.deadLetters : 0);
    body.appendChild(h('tr', { class: failures ? 'bad' : '', 'data-interval': r.interval },
      h('td', { class: 'l' }, h('a', { href: '#/interval/' + r.interval, text: String(r.interval) })),
      h('td', { class: 'l', text: time(intervalEnd(r.interval)) }),
      h('td', { text: num(r.uploads) }), h('td', { text: num(r.recordsIn) }),
      names.map(function (n) { return h('td', { text: num(r.outputs[n]) }); }).reduce(frag, document.createDocumentFragment()),
      h('td', { text: num(r.quarantined) }), h('td', { text: num(r.tasks) }), h('td', { text: num(r.speculative) }), h('td', { text: num(r.recomputed) }),
      h('td', { text: num(failures) }), h('td', { text: ms(r.processingMs) }), h('td', { text: ms(r.schedulingDelayMs) })));
  });
  var first = page.intervals.length ? page.intervals[0].interval + 1 : page.next;
  var newer = first < page.next ? Math.min(page.next, first + 25) : null;
  var jump = h('input', { type: 'number', min: 0, placeholder: 'interval', style: 'width:8em' });
  var pager = h('div', { class: 'pager' },
    h('button', { onclick: function () { location.hash = newer >= page.next ? '#/' : '#/?before=' + newer; } }, 'Newer'),
    h('button', { id: 'older', onclick: function () { if (page.older != null) location.hash = '#/?before=' + page.older; } }, 'Older'),
    h('span', { class: 'muted', text: page.intervals.length ? 'intervals ' + page.intervals[page.intervals.length - 1].interval + '–' + page.intervals[0].interval + ' of ' + num(page.next) : '' }),
    jump, h('button', { onclick: function () { if (jump.value !== '') location.hash = '#/interval/' + Number(jump.value); } }, 'Open'));
  if (newer == null) pager.firstChild.setAttribute('disabled', '');
  if (page.older == null) pager.children[1].setAttribute('disabled', '');
  return h('div', null, pager, h('table', { id: 'intervals' }, h('thead', null, head), body));
}
function frag(f, el) { f.appendChild(el); return f; }

function errorsSummary(st) {
  var kept = st.errors.intervals;
  if (!kept.length && !st.errors.unreadableDeadLetters) return null;
  return h('div', null, h('h2', { text: 'Kept under errors/' }),
    h('table', null, h('thead', null, h('tr', null, h('th', { class: 'l', text: 'Interval' }), h('th', { text: 'Dead letters' }), h('th', { text: 'Quarantined record files' }), h('th', { text: 'Refused uploads' }))),
      kept.slice(-20).reverse().map(function (e) {
        return h('tr', null, h('td', { class: 'l' }, h('a', { href: '#/interval/' + e.interval, text: String(e.interval) })), h('td', { text: num(e.deadLetters) }), h('td', { text: num(e.quarantineFiles) }), h('td', { text: num(e.refusedUploads) }));
      }).reduce(frag, h('tbody'))),
    st.errors.unreadableDeadLetters ? h('p', { text: st.errors.unreadableDeadLetters + ' unreadable dead letters under errors/unreadable-dead-letters/' }) : null);
}

function intervalPage(k) {
  return Promise.all([readStatus(), get('/api/intervals/' + k)]).then(function (r) {
    var d = r[1];
    var st = r[0];
    var rep = d.report;
    var failed = st.failed && st.failed.interval === k ? st.failed : null;
    show(
      h('p', null, h('a', { href: '#/', text: '← all intervals' })),
      h('h2', { id: 'interval-title', text: 'Interval ' + k + (d.status === 'committed' ? ', committed' : ', not committed') }),
      failedBox(failed),
      h('div', { class: 'cards' },
        card(num(d.uploads.count) + ' (' + bytes(d.uploads.bytes) + ')', 'uploads' + (d.uploads.refused ? ', ' + d.uploads.refused + ' refused' : '')),
        card(rep ? num(rep.recordsIn) : '–', 'records in'),
        card(rep ? ms(rep.processingMs) : '–', 'processing time'),
        card(rep ? ms(rep.schedulingDelayMs) : '–', 'scheduling delay'),
        card(rep ? num(rep.tasks) : d.tasks.length, 'tasks' + (rep && rep.tasksSkipped ? ', ' + rep.tasksSkipped + ' skipped' : '')),
        card(rep ? num(rep.speculative) : '–', 'speculative copies'),
        card(rep ? num(rep.recomputed) : '–', 'recomputed'),
        card(time(d.sealedAt), 'sealed' + (d.badRecords ? ', bad records: ' + d.badRecords : ''))),
      h('h2', { text: 'Lineage: RDDs and stages' }), dag(d.dag),
      h('h2', { text: 'Tasks' }), taskTimeline(d),
      h('h2', { text: 'Outputs' }), outputs(d.outputs),
      d.state.length ? h('h2', { text: 'State and persisted RDDs' }) : null, d.state.length ? stateTable(d.state) : null,
      h('h2', { text: 'Errors' }), errors(d.errors));
    // A committed interval does not change: no need to read it again.
    return d.status !== 'committed';
  });
}

function stageColors(stages) {
  var c = {};
  stages.forEach(function (st, i) { c[st.id] = PALETTE[i % PALETTE.length]; });
  return c;
}

function dag(g) {
  var colors = stageColors(g.stages);
  var byId = {}, depth = {};
  g.nodes.forEach(function (n) { byId[n.id] = n; });
  var into = {};
  g.edges.forEach(function (e) { (into[e.to] = into[e.to] || []).push(e.from); });
  var depthOf = function (id, seen) {
    if (depth[id] != null) return depth[id];
    if (seen[id]) return 0;
    seen[id] = true;
    var d = 0;
    (into[id] || []).forEach(function (p) { d = Math.max(d, depthOf(p, seen) + 1); });
    return (depth[id] = d);
  };
  g.nodes.forEach(function (n) { depthOf(n.id, {}); });
  var cols = [];
  g.nodes.forEach(function (n) { (cols[depth[n.id]] = cols[depth[n.id]] || []).push(n); });
  var NW = 160, NH = 46, GX = 34, GY = 18, pos = {};
  cols.forEach(function (col, c) { col.forEach(function (n, r) { pos[n.id] = { x: 10 + c * (NW + GX), y: 10 + r * (NH + GY) }; }); });
  var W = 20 + cols.length * (NW + GX), H = 20 + Math.max.apply(null, cols.map(function (c) { return c.length; })) * (NH + GY);
  var svg = s('svg', { id: 'dag', width: '100%', viewBox: '0 0 ' + W + ' ' + H, style: 'min-width:' + Math.min(W, 700) + 'px;max-width:' + W + 'px' });
  var defs = s('defs', null, svg);
  var marker = s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, defs);
  s('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#888' }, marker);
  g.edges.forEach(function (e) {
    var a = pos[e.from], b = pos[e.to];
    if (!a || !b) return;
    var x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    title(s('path', { d: 'M' + x1 + ' ' + y1 + ' C' + mx + ' ' + y1 + ' ' + mx + ' ' + y2 + ' ' + x2 + ' ' + y2, fill: 'none', stroke: '#888', 'stroke-width': 1.4,
      'stroke-dasharray': e.kind === 'shuffle' ? '6 4' : e.kind === 'stored' ? '2 3' : e.kind === 'side' ? '8 3 2 3' : '', 'marker-end': 'url(#arrow)', 'data-edge': e.kind }, svg), e.kind + ': ' + e.from + ' → ' + e.to);
  });
  g.nodes.forEach(function (n) {
    var p = pos[n.id], color = colors[n.stages[0]] || '#9ca3af';
    var grp = s('g', { class: 'dag-node', 'data-rdd': n.id }, svg);
    s('rect', { x: p.x, y: p.y, width: NW, height: NH, rx: 6, fill: '#fff', stroke: color, 'stroke-width': 2 }, grp);
    s('rect', { x: p.x, y: p.y, width: 6, height: NH, rx: 3, fill: color }, grp);
    var label = n.label.length > 22 ? n.label.slice(0, 21) + '…' : n.label;
    s('text', { x: p.x + 12, y: p.y + 18, text: label, style: 'fill:#1d2330;font-size:12px' }, grp);
    s('text', { x: p.x + 12, y: p.y + 35, text: n.id + ' · ' + n.kind + ' · ' + n.partitions + 'p' }, grp);
    title(grp, n.id + ' ' + n.label + '\n' + n.kind + ', ' + n.partitions + ' partitions' + (n.location ? '\nreads ' + n.location : '') + '\nstages: ' + (n.stages.join(', ') || 'none'));
  });
  var legend = h('div', { class: 'legend' }, g.stages.map(function (st) {
    return h('span', { 'data-stage': st.id }, h('span', { class: 'swatch', style: 'background:' + colors[st.id] }),
      st.id + ' (' + st.kind + ', ' + st.tasks + ' tasks' + (st.parents.length ? ', after ' + st.parents.join(', ') : '') + ')');
  }).reduce(frag, document.createDocumentFragment()), h('span', { class: 'muted', text: 'dashed: shuffle · dotted: persisted RDD' }));
  return h('div', null, legend, h('div', { class: 'svgbox' }, svg));
}

function taskTimeline(d) {
  var tasks = d.tasks;
  if (!tasks.length) return h('p', { class: 'muted', text: 'No task has started.' });
  var colors = stageColors(d.dag.stages);
  // One lane per stage in the plan's order; a recovery stage's lane right after the stage that wrote what it rebuilt.
  var lanes = [];
  d.dag.stages.forEach(function (st) {
    lanes.push({ id: st.id, label: st.id + ' (' + st.kind + ')' });
    d.recovery.filter(function (r) { return r.writer === st.id; }).forEach(function (r) {
      colors[r.id] = colors[st.id];
      lanes.push({ id: r.id, recovery: true, label: r.id + ': rebuilt ' + r.location + ' for a later interval', title: 'A recovery stage: run after this interval committed, when a later interval found part of ' + r.location + ' lost; it rebuilds only that RDD, from its own lineage.' });
    });
  });
  tasks.forEach(function (t) {
    if (!lanes.some(function (l) { return l.id === t.stage; })) lanes.push({ id: t.stage, label: t.stage });
  });
  var rows = [];
  lanes.forEach(function (lane) {
    var mine = tasks.filter(function (t) { return t.stage === lane.id; }).sort(function (a, b) { return a.partition - b.partition; });
    if (!mine.length) return;
    rows.push({ lane: lane });
    mine.forEach(function (t) { rows.push({ task: t }); });
  });
  var t0 = Infinity, t1 = -Infinity;
  tasks.forEach(function (t) {
    t.starts.forEach(function (x) { t0 = Math.min(t0, x.at); t1 = Math.max(t1, x.at); });
    if (t.done) { t0 = Math.min(t0, t.done.startedAt); t1 = Math.max(t1, t.done.endedAt); }
  });
  if (t1 <= t0) t1 = t0 + 1;
  var ROW = 16, L = 220, W = 1000, H = 30 + rows.length * ROW;
  var svg = s('svg', { id: 'timeline', width: '100%', viewBox: '0 0 ' + W + ' ' + H, style: 'min-width:700px' });
  var x = function (t) { return L + ((t - t0) / (t1 - t0)) * (W - L - 10); };
  for (var i = 0; i <= 4; i++) {
    var tx = L + (i * (W - L - 10)) / 4;
    s('line', { x1: tx, x2: tx, y1: 14, y2: H, stroke: '#eee' }, svg);
    s('text', { x: tx, y: 11, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle', text: '+' + ms((i * (t1 - t0)) / 4) }, svg);
  }
  rows.forEach(function (row, r) {
    var y = 20 + r * ROW;
    if (row.lane) {
      var label = s('text', { class: 'lane' + (row.lane.recovery ? ' recovery' : ''), x: 4, y: y + 12, 'data-lane': row.lane.id, style: 'font-weight:bold' + (row.lane.recovery ? ';font-style:italic' : ''), text: row.lane.label }, svg);
      if (row.lane.title) title(label, row.lane.title);
      return;
    }
    var t = row.task;
    s('text', { x: L - 6, y: y + 11, 'text-anchor': 'end', text: '#' + t.partition + (t.done && t.done.executor ? ' · ' + t.done.executor : '') }, svg);
    if (t.done) {
      var bar = s('rect', { class: 'bar task', x: x(t.done.startedAt), y: y + 2, width: Math.max(2, x(t.done.endedAt) - x(t.done.startedAt)), height: ROW - 4, rx: 2,
        fill: colors[t.stage] || '#888', stroke: t.done.copy > 0 ? '#d97706' : 'none', 'stroke-width': 2, 'data-task': t.stage + '/' + t.partition }, svg);
      title(bar, t.stage + ' partition ' + t.partition + ': ' + ms(t.done.durationMs) + ', attempt ' + t.done.attempt + ', won by ' + (t.done.copy ? 'speculative copy ' + t.done.copy : 'the first copy') + (t.done.executor ? ' on ' + t.done.executor : '') +
        '\n' + num(t.done.recordsIn) + ' records in, ' + num(t.done.recordsOut) + ' out (' + bytes(t.done.bytesOut) + ')' + (t.done.quarantined ? ', ' + t.done.quarantined + ' quarantined' : '') +
        (t.starts.length > 1 ? '\n' + t.starts.length + ' starts (retries or reruns)' : ''));
    } else if (t.starts.length) {
      var last = t.starts[t.starts.length - 1];
      title(s('rect', { class: 'bar task', x: x(last.at), y: y + 2, width: Math.max(2, x(t1) - x(last.at)), height: ROW - 4, fill: t.failures.length ? '#dc2626' : '#cbd5e1', 'data-task': t.stage + '/' + t.partition }, svg),
        t.stage + ' partition ' + t.partition + (t.failures.length ? ' failed: ' + t.failures[0].error : ': running, not done'));
    }
    t.starts.slice(0, -1).forEach(function (st) {
      title(s('line', { x1: x(st.at), x2: x(st.at), y1: y, y2: y + ROW, stroke: '#dc2626', 'stroke-width': 2 }, svg), 'attempt ' + st.attempt + ' (run ' + st.run + ') started ' + time(st.at));
    });
  });
  var legend = h('div', { class: 'legend' }, h('span', { class: 'muted', text: 'From each task\'s start marker to its completion record, with the worker or Lambda environment that ran it. Orange outline: a speculative copy won. Red tick: an earlier attempt\'s start. Red bar: failed.' }));
  return h('div', null, legend, h('div', { class: 'svgbox' }, svg));
}

function outputs(list) {
  if (!list.length) return h('p', { class: 'muted', text: 'No output.' });
  return list.map(function (o) {
    return h('div', { 'data-output': o.name },
      h('b', { text: o.name }), ' ', h('span', { class: 'muted', text: o.format + ', ' + (o.committed ? 'committed' : 'not committed') + ', ' + (o.records != null ? num(o.records) + ' records, ' : '') + o.parts + ' parts, ' + bytes(o.bytes) }),
      o.preview.length ? h('pre', { text: o.preview.join('\n') }) : h('p', { class: 'muted', text: o.format === 'collect' ? 'foreachRDD: run in the driver, nothing stored' : 'empty' }));
  }).reduce(frag, h('div'));
}

function stateTable(list) {
  return h('table', null, h('thead', null, h('tr', null, h('th', { class: 'l', text: 'RDD' }), h('th', { class: 'l', text: 'Tier' }), h('th', { class: 'l', text: 'Where' }), h('th', { text: 'Keys' }), h('th', { text: 'Parts' }), h('th', { text: 'Bytes' }))),
    list.map(function (x) {
      return h('tr', null, h('td', { class: 'l', text: x.rdd }), h('td', { class: 'l', text: x.tier }), h('td', { class: 'l', text: x.location + (x.present ? '' : ' (collected)') }),
        h('td', { text: num(x.keys) }), h('td', { text: num(x.parts) }), h('td', { text: bytes(x.bytes) }));
    }).reduce(frag, h('tbody')));
}

function errors(e) {
  var c = e.counts;
  if (!c.deadLetters && !c.quarantined && !c.refusedUploads) return h('p', { class: 'muted', id: 'no-errors', text: 'None: no dead letter, quarantined record or refused upload.' });
  var more = function (n, shown) { return n > shown ? h('p', { class: 'muted', text: (n - shown) + ' more not shown' }) : null; };
  return h('div', { id: 'errors' },
    c.deadLetters ? h('h3', { text: c.deadLetters + ' dead letters' }) : null,
    e.deadLetters.map(function (x) { return h('div', null, h('b', { text: x.stage + ' #' + x.partition + (x.earlier ? ' (an earlier run: history)' : '') }), h('pre', { text: (x.lastError || '') + '\n' + x.key })); }).reduce(frag, h('div')),
    more(c.deadLetters, e.deadLetters.length),
    c.quarantined ? h('h3', { text: c.quarantined + ' quarantined record files' }) : null,
    e.quarantined.map(function (x) { return h('div', null, h('b', { text: x.stage + ' #' + x.partition + ', ' + bytes(x.bytes) }), h('pre', { text: x.preview.join('\n') })); }).reduce(frag, h('div')),
    more(c.quarantined, e.quarantined.length),
    c.refusedUploads ? h('h3', { text: c.refusedUploads + ' refused uploads' }) : null,
    e.refusedUploads.map(function (x) { return h('p', { text: (x.name || x.key) + ': ' + (x.reason || '') }); }).reduce(frag, h('div')),
    more(c.refusedUploads, e.refusedUploads.length));
}
`;
