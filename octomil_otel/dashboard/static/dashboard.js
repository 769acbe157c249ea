/*
 * Octomil monitoring dashboard: four views and the request explorer over the JSON query
 * API (see app.py).
 *
 * The key arrives once in the address (/?key=...), is kept in sessionStorage and removed
 * from the address bar; every call sends it as "Authorization: Bearer <key>". Without a
 * key, or when the API answers 401, the page asks for one.
 *
 * Text from the data (model names, engines, device ids) only ever goes into the page as
 * textContent, option text or canvas text: never as HTML.
 */
(function () {
  'use strict';

  var STORAGE_KEY = 'octomil.key';
  var REFRESH_MS = 10000;
  var TARGET_BUCKETS = 60;
  var PRESETS = {
    '15m': 15 * 60e3,
    '1h': 3600e3,
    '6h': 6 * 3600e3,
    '24h': 24 * 3600e3,
    '7d': 7 * 86400e3,
  };
  // bucket sizes (seconds) the page asks for: the smallest that gives at most ~60 buckets
  var STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
    21600, 43200, 86400, 172800, 604800, 2592000];
  var PALETTE = ['#2563eb', '#059669', '#d97706', '#7c3aed', '#db2777', '#0891b2',
    '#65a30d', '#dc2626', '#475569', '#9333ea', '#ca8a04', '#0d9488'];
  var COLORS = {
    p50: '#2563eb', p90: '#f59e0b', p99: '#dc2626',
    completed: '#34a37a', failed: '#e5484d', cancelled: '#a8b1bd',
    errorRate: '#9f1239', distribution: '#6366f1',
    firstChunk: '#6366f1', chunk: '#2563eb', stall: '#dc2626',
    queue: '#a8b1bd', prefill: '#d97706', decode: '#2563eb', other: '#e2e8f0',
  };
  // where a request's time went, as /api/v1/query/phases names each part
  var PHASES = [['queue_ms', 'Queue'], ['prefill_ms', 'Prefill'], ['decode_ms', 'Decode'],
    ['other_ms', 'Other']];
  var REQUESTS_SHOWN = 100;
  // a chunk that took this many times the request's median gap between chunks is a stall
  var STALL_FACTOR = 4;

  var state = {
    range: '1h', from: null, to: null, model: '', devicesView: 'table', status: '', device: '',
  };
  var key = null;
  var timer = null;
  var inflight = null;
  var grid = [];            // bucket starts (ms) of the series charts
  var spanMs = 3600e3;      // the range of the last load, for the time labels
  var charts = null;
  var seriesColors = new Map();
  var hiddenSeries = new Set();
  var modelList = null;
  var deviceList = null;

  // for tests and the curious: how many loads finished, with what filters
  var hook = window.octomilDashboard = {
    loads: 0, loaded: null, loadedAt: 0, error: null, charts: null, devices: 0,
    request: null, requestLoads: 0,
  };

  function $(id) { return document.getElementById(id); }

  function Unauthorized() { this.name = 'Unauthorized'; }

  // --- the key ---------------------------------------------------------------------

  function storage(action, value) {
    try {
      if (action === 'get') return window.sessionStorage.getItem(STORAGE_KEY);
      if (action === 'set') window.sessionStorage.setItem(STORAGE_KEY, value);
      if (action === 'remove') window.sessionStorage.removeItem(STORAGE_KEY);
    } catch (e) { /* storage disabled: the key lives in this page only */ }
    return null;
  }

  /** Keep ?key= for the session and take it out of the address bar (and history). */
  function takeKeyFromAddress() {
    var url = new URL(window.location.href);
    if (!url.searchParams.has('key')) return;
    var given = (url.searchParams.get('key') || '').trim();
    url.searchParams.delete('key');
    window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
    if (given) { key = given; storage('set', given); }
  }

  function showKeyForm(message) {
    stop();
    key = null;
    $('app').hidden = true;
    $('key-view').hidden = false;
    var error = $('key-error');
    error.textContent = message || '';
    error.hidden = !message;
    $('key-input').value = '';
    $('key-input').focus();
    hook.error = message || null;
  }

  function forget(message) {
    storage('remove');
    showKeyForm(message);
  }

  // --- the API -----------------------------------------------------------------------

  function api(path, params, signal) {
    var url = path + (params ? '?' + params.toString() : '');
    return fetch(url, {
      headers: { Authorization: 'Bearer ' + key, Accept: 'application/json' },
      cache: 'no-store',
      signal: signal,
    }).then(function (response) {
      if (response.status === 401) throw new Unauthorized();
      if (!response.ok) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          throw new Error((body && body.error) || response.status + ' ' + response.statusText);
        });
      }
      return response.json();
    });
  }

  function range() {
    if (state.range === 'custom') return { from: state.from, to: state.to };
    var to = Date.now();
    return { from: to - PRESETS[state.range], to: to };
  }

  function stepFor(span) {
    var want = span / TARGET_BUCKETS / 1000;
    for (var i = 0; i < STEPS_S.length; i++) if (STEPS_S[i] >= want) return STEPS_S[i];
    return Math.ceil(want);
  }

  // --- loading ---------------------------------------------------------------------

  function stop() {
    clearTimeout(timer);
    timer = null;
    if (inflight) inflight.abort();
    inflight = null;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      if (document.hidden) schedule();  // resumes on visibilitychange
      else load();
    }, REFRESH_MS);
  }

  function load() {
    stop();
    if (!key) return;
    var r = range();
    if (!(r.from < r.to)) {
      setStatus('error', 'Choose a "from" before "to"');
      return;
    }
    var mine = inflight = new AbortController();
    var scope = new URLSearchParams({ from: String(Math.floor(r.from)), to: String(Math.floor(r.to)) });
    var filtered = new URLSearchParams(scope);
    if (state.model) filtered.set('model', state.model);
    var series = new URLSearchParams(filtered);
    series.set('step', String(stepFor(r.to - r.from)));
    var listed = new URLSearchParams(filtered);
    listed.set('limit', String(REQUESTS_SHOWN));
    if (state.status) listed.set('status', state.status);
    if (state.device) listed.set('device', state.device);
    var filters = {
      range: state.range, model: state.model, from: r.from, to: r.to,
      status: state.status, device: state.device,
    };
    setStatus('loading');

    Promise.all([
      api('api/v1/query/dimensions', scope, mine.signal),
      api('api/v1/query/ttfc', series, mine.signal),
      api('api/v1/query/throughput', series, mine.signal),
      api('api/v1/query/volume', series, mine.signal),
      api('api/v1/query/devices', filtered, mine.signal),
      api('api/v1/query/requests', listed, mine.signal),
      api('api/v1/query/phases', filtered, mine.signal),
    ]).then(function (answers) {
      if (mine !== inflight) return;
      spanMs = r.to - r.from;
      grid = buckets(r.from, r.to, answers[1].step_ms);
      renderModels(answers[0].models || []);
      renderDeviceFilter(answers[0].devices || []);
      renderTtfc(answers[1]);
      renderThroughput(answers[2]);
      renderVolume(answers[3]);
      renderDevices(answers[4]);
      renderRequests(answers[5]);
      renderPhases(answers[6]);
      filters.step_ms = answers[1].step_ms;
      hook.loads += 1;
      hook.loaded = filters;
      hook.loadedAt = Date.now();
      hook.error = null;
      $('banner').hidden = true;
      setStatus('ok', 'Updated ' + fmtClock(Date.now(), true));
    }, function (error) {
      if (mine !== inflight || (error && error.name === 'AbortError')) return;
      if (error instanceof Unauthorized) {
        forget('That key was not accepted: it is wrong or was revoked.');
        return;
      }
      var message = 'Could not load the data: ' + (error && error.message ? error.message : error);
      hook.error = message;
      $('banner').textContent = message;
      $('banner').hidden = false;
      setStatus('error', 'Update failed ' + fmtClock(Date.now(), true));
    }).then(function () {
      if (mine === inflight) {
        inflight = null;
        if (key) schedule();
      }
    });
  }

  function setStatus(kind, text) {
    $('status-dot').className = 'dot' + (kind === 'ok' ? '' : ' ' + kind);
    if (text) $('updated').textContent = text;
  }

  function buckets(from, to, step) {
    var out = [];
    for (var t = Math.floor(from / step) * step; t < to; t += step) out.push(t);
    return out;
  }

  /** One value per grid bucket: pick(bucket) where the answer has the bucket, else empty. */
  function onGrid(rows, pick, empty) {
    var at = new Map();
    rows.forEach(function (row) { at.set(row.start, row); });
    return grid.map(function (start) {
      var row = at.get(start);
      var value = row ? pick(row) : undefined;
      return value === undefined || value === null ? empty : value;
    });
  }

  // --- formatting ------------------------------------------------------------------

  var numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  var tokFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });

  function fmtMs(v) { return v === null || v === undefined ? '–' : numberFormat.format(v) + ' ms'; }
  function fmtTok(v) { return v === null || v === undefined ? '–' : tokFormat.format(v); }
  function fmtPct(r) { return r === null || r === undefined ? '–' : (r * 100).toFixed(1) + '%'; }
  function fmtCount(n) { return numberFormat.format(n); }
  function plural(n, word) { return fmtCount(n) + ' ' + word + (n === 1 ? '' : 's'); }

  function fmtClock(ms, seconds) {
    return new Date(ms).toLocaleTimeString(undefined, {
      hour: '2-digit', minute: '2-digit', second: seconds ? '2-digit' : undefined, hourCycle: 'h23',
    });
  }
  function fmtDay(ms) {
    return new Date(ms).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  }
  function fmtFull(ms) {
    return fmtDay(ms) + ' ' + fmtClock(ms, true);
  }
  /** A bucket's label on the time axis: the clock, with the day for long ranges. */
  function fmtBucket(ms) {
    if (spanMs > 86400e3) return fmtDay(ms) + ' ' + fmtClock(ms, false);
    return fmtClock(ms, spanMs <= 30 * 60e3);
  }
  function fmtSeen(ms) {
    var today = new Date().toDateString() === new Date(ms).toDateString();
    return today ? fmtClock(ms, true) : fmtFull(ms);
  }
  function toInputValue(ms) {
    var d = new Date(ms);
    function pad(n) { return String(n).padStart(2, '0'); }
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' +
      pad(d.getHours()) + ':' + pad(d.getMinutes());
  }
  function fromInputValue(value) {
    var ms = value ? new Date(value).getTime() : NaN;  // "YYYY-MM-DDTHH:MM": local time
    return isFinite(ms) ? ms : null;
  }

  // --- the charts ------------------------------------------------------------------

  function baseOptions(extra) {
    var options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: 'index', intersect: false },
      plugins: {
        legend: {
          position: 'top',
          align: 'end',
          labels: { boxWidth: 8, boxHeight: 8, usePointStyle: true, padding: 12 },
        },
        tooltip: {
          callbacks: {
            title: function (items) {
              return items.length && grid[items[0].dataIndex] !== undefined
                ? fmtFull(grid[items[0].dataIndex]) : '';
            },
          },
        },
      },
      scales: {
        x: {
          grid: { display: false },
          ticks: {
            maxRotation: 0,
            autoSkip: true,
            maxTicksLimit: 8,
            autoSkipPadding: 16,
            callback: function (value) {
              return grid[value] !== undefined ? fmtBucket(grid[value]) : '';
            },
          },
        },
        y: { beginAtZero: true, grace: '5%', ticks: { maxTicksLimit: 6 } },
      },
    };
    return merge(options, extra || {});
  }

  function merge(target, source) {
    Object.keys(source).forEach(function (name) {
      var value = source[name];
      if (value && typeof value === 'object' && !Array.isArray(value) &&
          target[name] && typeof target[name] === 'object') {
        merge(target[name], value);
      } else {
        target[name] = value;
      }
    });
    return target;
  }

  function line(label, color, extra) {
    return merge({
      label: label,
      data: [],
      borderColor: color,
      backgroundColor: color,
      borderWidth: 2,
      pointRadius: 2.5,
      pointHoverRadius: 4,
      tension: 0,
      spanGaps: true,
    }, extra || {});
  }

  function axisTitle(text) { return { display: true, text: text, font: { size: 11 } }; }

  function createCharts() {
    if (charts) return charts;
    var Chart = window.Chart;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.font.size = 12;
    Chart.defaults.color = '#5d6b7a';
    Chart.defaults.borderColor = '#e9edf2';

    charts = {};
    charts.ttfc = new Chart($('ttfc-chart'), {
      type: 'line',
      data: {
        labels: [],
        datasets: [line('p50', COLORS.p50), line('p90', COLORS.p90),
          line('p99', COLORS.p99, { borderDash: [5, 4] })],
      },
      options: baseOptions({
        scales: { y: { title: axisTitle('TTFC (ms)') } },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (c) { return c.dataset.label + ': ' + fmtMs(c.parsed.y); },
            },
          },
        },
      }),
    });

    charts.ttfcDistribution = new Chart($('ttfc-dist-chart'), {
      type: 'bar',
      data: {
        labels: [],
        datasets: [{ label: 'Requests', data: [], backgroundColor: COLORS.distribution,
          borderRadius: 3, maxBarThickness: 22 }],
      },
      options: {
        indexAxis: 'y',
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: {
          legend: { display: false },
          title: { display: true, text: 'Distribution (ms)', align: 'start',
            font: { size: 12, weight: '600' }, padding: { top: 4, bottom: 8 } },
          tooltip: {
            callbacks: {
              title: function (items) {
                return items.length ? 'TTFC ' + items[0].label + ' ms' : '';
              },
              label: function (c) { return plural(c.parsed.x, 'request'); },
            },
          },
        },
        scales: {
          x: { beginAtZero: true, grace: '5%', title: axisTitle('requests'),
            ticks: { precision: 0, maxTicksLimit: 5 } },
          y: { grid: { display: false }, ticks: { autoSkip: false, font: { size: 11 } } },
        },
      },
    });

    charts.throughput = new Chart($('throughput-chart'), {
      type: 'line',
      data: { labels: [], datasets: [] },
      options: baseOptions({
        scales: { y: { title: axisTitle('tokens / s') } },
        plugins: {
          legend: {
            // a series hidden from the legend stays hidden over refreshes and filters
            onClick: function (event, item, legend) {
              var chart = legend.chart;
              var label = chart.data.datasets[item.datasetIndex].label;
              var visible = chart.isDatasetVisible(item.datasetIndex);
              chart.setDatasetVisibility(item.datasetIndex, !visible);
              if (visible) hiddenSeries.add(label); else hiddenSeries.delete(label);
              chart.update();
            },
          },
          tooltip: {
            callbacks: {
              label: function (c) {
                var requests = c.dataset.requests[c.dataIndex];
                return c.dataset.label + ': ' + fmtTok(c.parsed.y) + ' tok/s (' +
                  plural(requests || 0, 'request') + ')';
              },
            },
          },
        },
      }),
    });

    charts.volume = new Chart($('volume-chart'), {
      type: 'bar',
      data: {
        labels: [],
        datasets: [
          line('Error rate', COLORS.errorRate, { type: 'line', yAxisID: 'rate', order: 0,
            borderWidth: 1.5, pointRadius: 2 }),
          { label: 'Completed', data: [], backgroundColor: COLORS.completed, stack: 'requests', order: 1 },
          { label: 'Failed', data: [], backgroundColor: COLORS.failed, stack: 'requests', order: 1 },
          { label: 'Cancelled', data: [], backgroundColor: COLORS.cancelled, stack: 'requests', order: 1 },
        ],
      },
      options: baseOptions({
        scales: {
          x: { stacked: true },
          y: { stacked: true, title: axisTitle('requests'), ticks: { precision: 0 } },
          rate: {
            position: 'right',
            beginAtZero: true,
            suggestedMax: 10,
            grid: { drawOnChartArea: false },
            title: axisTitle('error rate'),
            ticks: { maxTicksLimit: 6, callback: function (v) { return v + '%'; } },
          },
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (c) {
                if (c.dataset.yAxisID === 'rate') {
                  return c.parsed.y === null ? null : 'Error rate: ' + c.parsed.y.toFixed(1) + '%';
                }
                return c.dataset.label + ': ' + fmtCount(c.parsed.y);
              },
            },
          },
        },
      }),
    });

    charts.devices = horizontalBars('devices-chart', [
      { label: 'p50', data: [], backgroundColor: COLORS.p50, borderRadius: 2 },
      { label: 'p90', data: [], backgroundColor: COLORS.p90, borderRadius: 2 },
      { label: 'p99', data: [], backgroundColor: COLORS.p99, borderRadius: 2 },
    ], function (c) { return 'TTFC ' + c.dataset.label + ': ' + fmtMs(c.parsed.x); }, {
      x: { beginAtZero: true, grace: '5%', title: axisTitle('TTFC (ms)') },
      y: { grid: { display: false },
        ticks: { font: { family: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace' } } },
    });

    charts.phases = horizontalBars('phases-chart', PHASES.map(function (phase) {
      var name = phase[0].replace('_ms', '');
      return { label: phase[1], data: [], backgroundColor: COLORS[name], stack: 'time' };
    }), function (c) { return c.dataset.label + ': ' + fmtMs(c.parsed.x); }, {
      x: { stacked: true, beginAtZero: true, title: axisTitle('mean per completed request (ms)') },
      y: { stacked: true, grid: { display: false } },
    });

    hook.charts = charts;
    return charts;
  }

  /** A bar chart with a bar (or a stack) per label, its values along x. */
  function horizontalBars(id, datasets, tooltipLabel, scales) {
    return new Chart($(id), {
      type: 'bar',
      data: { labels: [], datasets: datasets },
      options: {
        indexAxis: 'y',
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: 'index', intersect: false, axis: 'y' },
        plugins: {
          legend: { position: 'top', align: 'end',
            labels: { boxWidth: 8, boxHeight: 8, usePointStyle: true, padding: 12 } },
          tooltip: { callbacks: { label: tooltipLabel } },
        },
        scales: scales,
      },
    });
  }

  function setLabels(chart) {
    chart.data.labels = grid.map(function (_, i) { return i; });
  }

  function renderTtfc(answer) {
    var c = charts.ttfc;
    setLabels(c);
    ['p50', 'p90', 'p99'].forEach(function (name, i) {
      c.data.datasets[i].data = onGrid(answer.buckets, function (b) { return b[name]; }, null);
    });
    c.update('none');

    var bounds = answer.distribution.bounds_ms;
    var counts = answer.distribution.counts;
    var d = charts.ttfcDistribution;
    d.data.labels = counts.map(function (_, i) {
      if (i === 0) return '≤' + bounds[0];
      if (i === bounds.length) return '>' + bounds[bounds.length - 1];
      return bounds[i - 1] + '–' + bounds[i];
    });
    d.data.datasets[0].data = counts.slice();
    d.update('none');

    var total = counts.reduce(function (a, b) { return a + b; }, 0);
    $('ttfc-sub').textContent = total
      ? plural(total, 'completed request') + ' · p50, p90, p99 per ' + fmtStep(answer.step_ms)
      : '';
    $('ttfc-empty').hidden = total > 0;
  }

  function fmtStep(ms) {
    var s = ms / 1000;
    if (s < 60) return s + ' s';
    if (s < 3600) return s / 60 + ' min';
    if (s < 86400) return s / 3600 + ' h';
    return s / 86400 + ' d';
  }

  function colorOf(label) {
    if (!seriesColors.has(label)) seriesColors.set(label, PALETTE[seriesColors.size % PALETTE.length]);
    return seriesColors.get(label);
  }

  function renderThroughput(answer) {
    var c = charts.throughput;
    setLabels(c);
    var requests = 0;
    var weighted = 0;
    c.data.datasets = answer.series.map(function (s) {
      var label = s.model + ' · ' + s.engine;
      requests += s.requests;
      weighted += (s.avg_tok_s || 0) * s.requests;
      return line(label, colorOf(label), {
        data: onGrid(s.buckets, function (b) { return b.avg_tok_s; }, null),
        requests: onGrid(s.buckets, function (b) { return b.requests; }, 0),
        model: s.model,
        engine: s.engine,
        hidden: hiddenSeries.has(label),
      });
    });
    c.update('none');
    var n = answer.series.length;
    $('throughput-sub').textContent = n
      ? plural(n, 'model/engine pair') + ' · ' + plural(requests, 'request') +
        ' · ' + fmtTok(weighted / requests) + ' tok/s average'
      : '';
    $('throughput-empty').hidden = n > 0;
  }

  function renderVolume(answer) {
    var c = charts.volume;
    setLabels(c);
    var ds = c.data.datasets;
    ds[0].data = onGrid(answer.buckets, function (b) {
      return b.error_rate === null ? null : b.error_rate * 100;
    }, null);
    ds[1].data = onGrid(answer.buckets, function (b) { return b.completed; }, 0);
    ds[2].data = onGrid(answer.buckets, function (b) { return b.failed; }, 0);
    ds[3].data = onGrid(answer.buckets, function (b) { return b.cancelled; }, 0);
    c.update('none');
    var t = answer.totals;
    $('volume-sub').textContent = t.requests
      ? plural(t.requests, 'request') + ' · ' + fmtPct(t.error_rate) + ' failed · ' +
        fmtPct(t.cancelled_rate) + ' cancelled'
      : '';
    $('volume-empty').hidden = t.requests > 0;
  }

  function renderPhases(answer) {
    var models = answer.models;
    var c = charts.phases;
    c.data.labels = models.map(function (m) { return m.model + ' (' + m.engine + ')'; });
    PHASES.forEach(function (phase, i) {
      c.data.datasets[i].data = models.map(function (m) { return m[phase[0]]; });
    });
    c.update('none');
    $('phases-sub').textContent = models.length
      ? 'mean per completed request, over ' + plural(models.reduce(function (n, m) {
        return n + m.requests; }, 0), 'request')
      : '';
    $('phases-empty').hidden = models.length > 0;
  }

  function cell(text, className, title) {
    var td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    return td;
  }

  function renderDevices(answer) {
    var devices = answer.devices.slice().sort(function (a, b) {
      return b.requests - a.requests || (a.device_id < b.device_id ? -1 : 1);
    });
    var body = document.querySelector('#devices-table tbody');
    var rows = devices.map(function (d) {
      var tr = document.createElement('tr');
      tr.dataset.device = d.device_id;
      tr.append(
        cell(d.device_id, 'device'),
        cell(fmtCount(d.requests), '', d.completed + ' completed, ' + d.failed + ' failed, ' +
          d.cancelled + ' cancelled'),
        cell(fmtPct(d.error_rate), d.error_rate ? 'bad' : ''),
        cell(fmtMs(d.ttfc_p50)),
        cell(fmtMs(d.ttfc_p90)),
        cell(fmtMs(d.ttfc_p99)),
        cell(fmtTok(d.avg_tok_s)),
        cell(fmtSeen(d.last_seen), '', new Date(d.last_seen).toISOString())
      );
      return tr;
    });
    if (!rows.length) {
      var tr = document.createElement('tr');
      var td = cell('No devices in this range', 'none');
      td.colSpan = 8;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);

    var top = devices.slice(0, 15);
    var c = charts.devices;
    c.data.labels = top.map(function (d) { return d.device_id; });
    c.data.datasets[0].data = top.map(function (d) { return d.ttfc_p50; });
    c.data.datasets[1].data = top.map(function (d) { return d.ttfc_p90; });
    c.data.datasets[2].data = top.map(function (d) { return d.ttfc_p99; });
    c.update('none');

    $('devices-sub').textContent = devices.length
      ? plural(devices.length, 'device') +
        (devices.length > top.length ? ' · the chart shows the ' + top.length + ' busiest' : '')
      : '';
    $('devices-empty').hidden = devices.length > 0 || state.devicesView !== 'chart';
    hook.devices = devices.length;
  }

  /** The options of a filter: "all" and ``values``, kept while the list is unchanged
   * (an open select is left alone); the chosen value stays even if the range lost it. */
  function renderChoices(select, all, values, chosen, shown) {
    var wanted = values.slice();
    if (chosen && wanted.indexOf(chosen) < 0) wanted.push(chosen);
    var signature = JSON.stringify(wanted);
    if (signature === shown) return shown;
    var options = [new Option(all, '')].concat(wanted.map(function (v) {
      return new Option(v, v);  // text, not HTML
    }));
    select.replaceChildren.apply(select, options);
    select.value = chosen;
    return signature;
  }

  function renderModels(models) {
    modelList = renderChoices($('model'), 'All models', models, state.model, modelList);
  }

  function renderDeviceFilter(devices) {
    deviceList = renderChoices($('request-device'), 'All devices', devices, state.device,
      deviceList);
  }

  // --- the request explorer --------------------------------------------------------

  var STATUS_TEXT = { completed: 'Completed', failed: 'Failed', cancelled: 'Cancelled' };

  function statusCell(request) {
    var text = STATUS_TEXT[request.status] || request.status;
    if (request.status === 'failed' && request.error_type) text += ': ' + request.error_type;
    return cell(text, 'status ' + request.status, request.error_type || '');
  }

  function renderRequests(answer) {
    var body = document.querySelector('#requests-table tbody');
    var rows = answer.requests.map(function (request) {
      var tr = document.createElement('tr');
      tr.dataset.request = request.request_id;
      tr.tabIndex = 0;
      tr.title = 'Open ' + request.request_id;
      tr.append(
        cell(fmtSeen(request.ended), 'time', new Date(request.ended).toISOString()),
        cell(request.model, 'text'),
        cell(request.engine, 'text'),
        cell(request.device_id, 'device'),
        statusCell(request),
        cell(fmtMs(request.ttfc_ms)),
        cell(request.output_tokens === null ? '–' : fmtCount(request.output_tokens)),
        cell(fmtTok(request.throughput_tok_s))
      );
      return tr;
    });
    if (!rows.length) {
      var tr = document.createElement('tr');
      var td = cell('No requests in this range', 'none');
      td.colSpan = 8;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
    var n = answer.requests.length;
    $('requests-sub').textContent = n
      ? (n === REQUESTS_SHOWN ? 'The latest ' + n + ' requests' : plural(n, 'request')) +
        ' · open one for its chunks and trace'
      : '';
  }

  function openRequest(id) {
    api('api/v1/query/requests/' + encodeURIComponent(id)).then(renderRequest, function (error) {
      if (error instanceof Unauthorized) {
        forget('That key was not accepted: it is wrong or was revoked.');
        return;
      }
      $('banner').textContent = 'Could not open ' + id + ': ' + (error && error.message);
      $('banner').hidden = false;
    });
  }

  function median(values) {
    var sorted = values.slice().sort(function (a, b) { return a - b; });
    var middle = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  }

  /** Its metrics, in the order a reader follows a request, where it has them. */
  function requestFacts(request) {
    var m = request.metrics;
    var facts = [
      ['Model', request.model + ' · ' + request.engine],
      ['Device', request.device_id],
      ['Started', request.started === null ? null : fmtFull(request.started)],
      ['Ended', request.ended === null ? null : fmtFull(request.ended)],
      ['Duration', m.total_duration_ms === undefined ? null : fmtMs(m.total_duration_ms)],
      ['Queue', m.queue_ms === undefined ? null : fmtMs(m.queue_ms)],
      ['TTFC', m.ttfc_ms === undefined ? null : fmtMs(m.ttfc_ms)],
      ['Prefill', m.prefill_ms === undefined ? null : fmtMs(m.prefill_ms)],
      ['Decode', m.decode_ms === undefined ? null : fmtMs(m.decode_ms)],
      ['Input tokens', m.input_tokens === undefined ? null : fmtCount(m.input_tokens)],
      ['Output tokens', m.output_tokens === undefined ? null : fmtCount(m.output_tokens)],
      ['Throughput', m.throughput_tok_s === undefined ? null : fmtTok(m.throughput_tok_s) + ' tok/s'],
      ['Chunk gap avg', m.chunk_latency_avg_ms === undefined ? null : fmtMs(m.chunk_latency_avg_ms)],
      ['Chunk gap p99', m.chunk_latency_p99_ms === undefined ? null : fmtMs(m.chunk_latency_p99_ms)],
      ['Error', request.error_type],
    ];
    return facts.filter(function (fact) { return fact[1] !== null && fact[1] !== undefined; });
  }

  function renderRequest(request) {
    $('request-id').textContent = request.request_id;
    var badge = $('request-badge');
    badge.textContent = STATUS_TEXT[request.status] || 'Not ended';
    badge.className = 'badge ' + (request.status || 'open');

    var list = $('request-metrics');
    list.replaceChildren.apply(list, requestFacts(request).map(function (fact) {
      var item = document.createElement('div');
      var term = document.createElement('dt');
      var value = document.createElement('dd');
      term.textContent = fact[0];
      value.textContent = fact[1];
      item.append(term, value);
      return item;
    }));

    $('request-trace').hidden = !request.trace_id;
    $('request-trace-id').textContent = request.trace_id || '';
    var link = $('request-trace-link');
    link.hidden = !request.trace_url;
    if (request.trace_url) link.href = request.trace_url; else link.removeAttribute('href');

    var dialog = $('request-dialog');
    if (!dialog.open) dialog.showModal();
    renderChunks(request.chunks);
    hook.request = request.request_id;
    hook.requestLoads += 1;
  }

  /** Each chunk's latency as a bar: the first (the TTFC) apart, stalls in red. */
  function renderChunks(chunks) {
    var latencies = chunks.map(function (c) { return c.latency_ms; });
    var gaps = latencies.slice(1);
    var typical = gaps.length ? median(gaps) : null;
    var stalls = 0;
    var colors = latencies.map(function (latency, i) {
      if (i === 0) return COLORS.firstChunk;
      if (typical !== null && latency > STALL_FACTOR * typical) {
        stalls += 1;
        return COLORS.stall;
      }
      return COLORS.chunk;
    });
    var chart = charts.request || (charts.request = new window.Chart($('request-chart'), {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'Latency', data: [], backgroundColor: [] }] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              title: function (items) {
                return items.length ? 'Chunk ' + items[0].label : '';
              },
              label: function (c) { return fmtMs(c.parsed.y); },
            },
          },
        },
        scales: {
          x: { title: axisTitle('chunk'), grid: { display: false },
            ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 20 } },
          y: { beginAtZero: true, grace: '5%', title: axisTitle('ms since the chunk before') },
        },
      },
    }));
    chart.data.labels = chunks.map(function (c) { return c.index; });
    chart.data.datasets[0].data = latencies;
    chart.data.datasets[0].backgroundColor = colors;
    chart.update('none');
    $('request-chunks-sub').textContent = chunks.length
      ? plural(chunks.length, 'chunk') + ' · first ' + fmtMs(latencies[0]) +
        (typical === null ? '' : ' · median gap ' + fmtMs(typical) + ' · ' +
          plural(stalls, 'stall') + ' (over ' + STALL_FACTOR + '× the median gap)')
      : 'No chunks';
  }

  // --- the controls ----------------------------------------------------------------

  function pressRange(name) {
    document.querySelectorAll('#range button').forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.dataset.range === name));
    });
    $('custom').hidden = name !== 'custom';
  }

  function onRange(name) {
    if (name === 'custom') {
      var r = range();
      state.from = Math.floor(r.from / 60e3) * 60e3;
      state.to = Math.ceil(r.to / 60e3) * 60e3;
      $('from').value = toInputValue(state.from);
      $('to').value = toInputValue(state.to);
    }
    state.range = name;
    pressRange(name);
    load();
  }

  function onCustom() {
    var from = fromInputValue($('from').value);
    var to = fromInputValue($('to').value);
    var ok = from !== null && to !== null && from < to;
    $('from').classList.toggle('invalid', !ok);
    $('to').classList.toggle('invalid', !ok);
    if (!ok) {
      setStatus('error', 'Choose a "from" before "to"');
      return;
    }
    state.from = from;
    state.to = to;
    load();
  }

  function onDevicesView(view) {
    state.devicesView = view;
    document.querySelectorAll('#devices-view button').forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.dataset.view === view));
    });
    $('devices-table-wrap').hidden = view !== 'table';
    $('devices-chart-wrap').hidden = view !== 'chart';
    $('devices-empty').hidden = view !== 'chart' || (hook.devices || 0) > 0;
  }

  function wire() {
    document.querySelectorAll('#range button').forEach(function (b) {
      b.addEventListener('click', function () { onRange(b.dataset.range); });
    });
    $('from').addEventListener('change', onCustom);
    $('to').addEventListener('change', onCustom);
    $('model').addEventListener('change', function () {
      state.model = $('model').value;
      load();
    });
    $('request-status').addEventListener('change', function () {
      state.status = $('request-status').value;
      load();
    });
    $('request-device').addEventListener('change', function () {
      state.device = $('request-device').value;
      load();
    });
    var requestRows = document.querySelector('#requests-table tbody');
    requestRows.addEventListener('click', function (event) {
      var row = event.target.closest('tr[data-request]');
      if (row) openRequest(row.dataset.request);
    });
    requestRows.addEventListener('keydown', function (event) {
      var row = event.target.closest('tr[data-request]');
      if (row && (event.key === 'Enter' || event.key === ' ')) {
        event.preventDefault();
        openRequest(row.dataset.request);
      }
    });
    $('request-close').addEventListener('click', function () { $('request-dialog').close(); });
    document.querySelectorAll('#devices-view button').forEach(function (b) {
      b.addEventListener('click', function () { onDevicesView(b.dataset.view); });
    });
    $('forget').addEventListener('click', function () { forget(''); });
    $('key-form').addEventListener('submit', function (event) {
      event.preventDefault();
      var given = $('key-input').value.trim();
      if (!given) return;
      key = given;
      storage('set', given);
      start();
    });
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden && key && !inflight && hook.loaded &&
          Date.now() - hook.loadedAt > REFRESH_MS) load();
    });
  }

  function start() {
    key = key || storage('get');
    if (!key) {
      showKeyForm('');
      return;
    }
    api('api/v1/auth/whoami').then(function (who) {
      $('org').textContent = who.org_id;
      return true;
    }, function (error) {
      if (error instanceof Unauthorized) {
        forget('That key was not accepted: it is wrong or was revoked.');
        return false;
      }
      return true;  // the API is unreachable: show the page; load() says so and retries
    }).then(function (ok) {
      if (!ok) return;
      $('key-view').hidden = true;
      $('app').hidden = false;
      createCharts();
      load();
    });
  }

  takeKeyFromAddress();
  wire();
  pressRange(state.range);
  start();
})();
