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
const state = {total: Object.keys(DATA).length, rendered: 0, failed: 0, errors: []};
const status = document.getElementById('status');
function show(){ status.textContent = state.rendered + ' of ' + state.total + ' charts drawn' +
  (state.failed ? ', ' + state.failed + ' failed' : '') + ' (charts draw as they scroll into view)'; }
function render(el){
  if (el.dataset.state) return el._done || Promise.resolve();
  el.dataset.state = 'pending';
  const c = DATA[el.dataset.chart];
  const datasets = {};
  for (const [k, t] of Object.entries(c.data)) datasets[k] = decode(t);
  const spec = Object.assign({}, c.spec, {datasets: datasets});
  el._done = vegaEmbed(el, spec, {mode: 'vega-lite', renderer: 'svg', actions: false})
    .then(function(){ el.dataset.state = 'done'; state.rendered++; show(); })
    .catch(function(e){ el.dataset.state = 'error'; el.classList.add('error');
      el.textContent = 'chart failed: ' + e; state.failed++; state.errors.push(String(e));
      console.error('chart ' + el.dataset.chart + ' failed', e); show(); });
  return el._done;
}
const charts = Array.from(document.querySelectorAll('.chart'));
let first = null;
const io = new IntersectionObserver(function(entries){
  const batch = [];
  for (const e of entries) if (e.isIntersecting) { io.unobserve(e.target); batch.push(render(e.target)); }
  if (!first) { first = Promise.all(batch).then(function(){ document.body.dataset.ready = '1'; }); }
}, {rootMargin: '600px 0px'});
charts.forEach(function(el){ io.observe(el); });
show();
window.confusionReport = {
  state: state,
  renderAll: function(){ return Promise.all(charts.map(render)).then(function(){ return state; }); }
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
