// The report page's script: decode the chart data, draw charts as they scroll into view,
// filter models, sort tables. window.confusionReport.renderAll() draws every chart (tests).
(function(){
'use strict';
const DATA = JSON.parse(document.getElementById('report-data').textContent);
function decode(t){
  const n = t.n, rows = new Array(n);
  for (let i = 0; i < n; i++) rows[i] = {};
  for (const [k, c] of Object.entries(t.cols)) {
    if (Array.isArray(c)) { for (let i = 0; i < n; i++) rows[i][k] = c[i]; }
    else if (c.dict) { for (let i = 0; i < n; i++) rows[i][k] = c.codes[i] < 0 ? null : c.dict[c.codes[i]]; }
    else { for (let i = 0; i < n; i++) rows[i][k] = c.delta[i] === null ? null : c.base + c.delta[i]; }
  }
  return rows;
}
const state = {total: Object.keys(DATA).length, rendered: 0, failed: 0, released: 0, errors: []};
const RENDERER = document.body.dataset.renderer || 'svg';
const status = document.getElementById('status');
function show(){ status.textContent = state.rendered + ' of ' + state.total + ' charts drawn' +
  (state.failed ? ', ' + state.failed + ' failed' : '') + ' (charts draw as they scroll into view)'; }
function draw(el){
  const c = DATA[el.dataset.chart];
  const datasets = {};
  for (const [k, t] of Object.entries(c.data)) datasets[k] = decode(t);
  const spec = Object.assign({}, c.spec, {datasets: datasets});
  return vegaEmbed(el, spec, {mode: 'vega-lite', renderer: RENDERER, actions: false})
    .then(function(result){ el._view = result.view; el.dataset.state = 'done'; state.rendered++;
      show(); far.observe(el); })
    .catch(function(e){ el.dataset.state = 'error'; el.classList.add('error');
      el.textContent = 'chart failed: ' + e; state.failed++; state.errors.push(String(e));
      console.error('chart ' + el.dataset.chart + ' failed', e); show(); });
}
// One chart at a time: hundreds of charts asked for at once would freeze the page until all
// are done; in a queue, each appears as soon as it is drawn and the page stays responsive.
let queue = Promise.resolve();
function render(el){
  if (!el._done) {
    el.dataset.state = 'pending';
    el._done = queue = queue.then(function(){
      return new Promise(function(ok){ setTimeout(ok, 0); }); }).then(function(){ return draw(el); });
  }
  return el._done;
}
const charts = Array.from(document.querySelectorAll('.chart'));
let first = null;
const io = new IntersectionObserver(function(entries){
  const batch = [];
  for (const e of entries) if (e.isIntersecting) { io.unobserve(e.target); batch.push(render(e.target)); }
  if (!first) { first = Promise.all(batch).then(function(){
    state.readyAt = performance.now(); document.body.dataset.ready = '1'; }); }
}, {rootMargin: '600px 0px'});
charts.forEach(function(el){ io.observe(el); });
// A chart scrolled far out of view gives its Vega view back (memory stays bounded however many
// models the page has) and keeps its size, so nothing jumps; it is drawn again on the way back.
let keepAll = false;
const far = new IntersectionObserver(function(entries){
  for (const e of entries) {
    const el = e.target;
    if (e.isIntersecting || keepAll || el.dataset.state !== 'done') continue;
    far.unobserve(el);
    el.style.minWidth = el.offsetWidth + 'px'; el.style.minHeight = el.offsetHeight + 'px';
    el._view.finalize(); el._view = null; el._done = null;
    el.replaceChildren(); el.dataset.state = ''; state.rendered--; state.released++;
    io.observe(el);
  }
}, {rootMargin: '3000px 0px'});
show();
function renderWhere(test){
  return Promise.all(charts.filter(test).map(render)).then(function(){ return state; });
}
window.confusionReport = {
  state: state,
  idle: function(){ return queue.then(function(){ return state; }); },
  // Draw the charts whose id starts with prefix ('overview--', 'model1--'); all with ''.
  render: function(prefix){ return renderWhere(function(el){ return el.dataset.chart.indexOf(prefix) === 0; }); },
  // Draw every chart and keep them all (tests check each one; scrolling releases far ones).
  renderAll: function(){ keepAll = true; return renderWhere(function(){ return true; }).then(function(s){
    state.allAt = performance.now(); return s; }); }
};
document.getElementById('filter').addEventListener('input', function(ev){
  const q = ev.target.value.trim().toLowerCase();
  document.querySelectorAll('[data-model]').forEach(function(el){
    el.classList.toggle('hidden', q !== '' && el.dataset.model.toLowerCase().indexOf(q) < 0);
  });
});
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    const body = th.closest('table').tBodies[0];
    const dir = th.dataset.dir === 'asc' ? -1 : 1;
    th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    const key = function(tr){ const td = tr.children[col]; const v = td.dataset.sort !== undefined ? td.dataset.sort : td.textContent;
      const n = parseFloat(v); return isNaN(n) || v === '' ? v : n; };
    Array.from(body.rows).sort(function(a, b){ const x = key(a), y = key(b);
      if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * dir;
      return (typeof x === 'number' ? -1 : 1) * dir; })
      .forEach(function(tr){ body.appendChild(tr); });
  });
});
})();
