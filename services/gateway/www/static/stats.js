// The statistics panel: tables of GetStatistics (services/stats) through the gateway. Shown to
// the coordinator always (with "statistics unavailable" when the service does not answer), to
// another agency only when the stats service grants it the measures (a refusal hides it).
// Suppressed cells (fewer than k, or giving one back by subtraction) are shown as such, never
// as a number; values computed from fewer than k observations (-1) are shown as withheld.
import * as api from './api.js';
import { h, replace } from './dom.js';
import { t, label } from './i18n.js';

const $ = (id) => document.getElementById(id);
const MONTHS = 12; // the panel covers the current month and the 11 before it
const ALL = '*';

const last = { cases: null, referrals: null, fromMs: 0, coordinator: false, reason: '' };

// The first millisecond (UTC) of the month MONTHS-1 months before now: the tables' from_ms.
export function statsFromMs(now = new Date()) {
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - (MONTHS - 1), 1);
}

function request(measure, dimensions, fromMs) {
  return api.request('stats', 'get_statistics', { measure, dimensions, fromMs: String(fromMs) });
}

function refused(r) {
  return r.httpStatus === 403 || (r.reply && r.reply.status === 'STATUS_PERMISSION_DENIED');
}

// loadStats(coordinator): asks both tables and renders the panel. A refusal to an agency that
// is not the coordinator hides the panel; anything else that is not a table (the service down,
// a timeout) shows "statistics unavailable".
export async function loadStats(coordinator) {
  const fromMs = statsFromMs();
  const [cases, referrals] = await Promise.all([
    request('cases', ['region', 'month'], fromMs),
    request('referrals', ['service'], fromMs),
  ]);
  last.coordinator = coordinator;
  last.loaded = true;
  last.fromMs = fromMs;
  last.cases = cases.ok ? cases.reply.statisticsTable || {} : null;
  last.referrals = referrals.ok ? referrals.reply.statisticsTable || {} : null;
  const bad = [cases, referrals].find((r) => !r.ok);
  last.reason = bad ? (bad.reply && bad.reply.status) || String(bad.httpStatus) : '';
  // another agency sees the measures it is granted, and no panel with none of them
  last.hidden = !coordinator && !cases.ok && !referrals.ok;
  if (!coordinator && bad && refused(bad)) last.reason = '';
  renderStats();
}

export function hideStats() {
  const panel = $('stats-panel');
  panel.hidden = true;
  panel.dataset.state = '';
  replace($('stats-cases'));
  replace($('stats-referrals'));
  last.cases = last.referrals = null;
  last.loaded = false;
}

function suppressedCell(tag, attrs, k) {
  return h(tag, { ...attrs, class: 'num suppressed', dataset: { ...attrs.dataset, suppressed: 'true', count: '' },
    title: t('suppressedTitle', { k }) },
  h('span', { 'aria-hidden': 'true' }, t('suppressedCell', { k })),
  h('span', { class: 'sr-only' }, t('suppressedTitle', { k })));
}

function countCell(tag, row, key, k, headLabel) {
  const attrs = { dataset: { key }, 'data-label': headLabel || null };
  if (!row) return h(tag, { ...attrs, class: 'num', dataset: { key, count: '0', suppressed: 'false' } }, '0');
  if (row.suppressed) return suppressedCell(tag, attrs, k);
  const n = String(row.count || '0');
  return h(tag, { ...attrs, class: 'num', dataset: { key, count: n, suppressed: 'false' } }, n);
}

function monthLabel(m) {
  if (m === ALL) return t('total');
  const [y, mo] = String(m).split('-').map(Number);
  if (!y || !mo) return String(m);
  try {
    return new Intl.DateTimeFormat(document.documentElement.lang || 'en', { month: 'short', year: 'numeric', timeZone: 'UTC' })
      .format(new Date(Date.UTC(y, mo - 1, 1)));
  } catch (e) {
    return String(m);
  }
}

// Cases: one line per region (and the total), one column per month (and the total), a bar of
// each region's total where it is shown.
function casesTable(tab) {
  const k = tab.k || 0;
  const rows = tab.rows || [];
  const byKey = new Map(rows.map((r) => [(r.keys || []).join('|'), r]));
  const regions = [...new Set(rows.map((r) => r.keys[0]).filter((x) => x !== ALL))].sort();
  const months = [...new Set(rows.map((r) => r.keys[1]).filter((x) => x !== ALL))].sort();
  if (!regions.length) return h('p', { class: 'muted empty' }, t('none'));
  const cols = [...months, ALL];
  const totals = regions.map((r) => byKey.get(`${r}|${ALL}`)).filter((r) => r && !r.suppressed).map((r) => Number(r.count));
  const max = Math.max(1, ...totals);
  const line = (region) => {
    const total = byKey.get(`${region}|${ALL}`);
    const head = region === ALL ? t('total') : region;
    return h('tr', { dataset: { region } },
      h('th', { scope: 'row' }, head),
      cols.map((m) => countCell('td', byKey.get(`${region}|${m}`), `${region}|${m}`, k, monthLabel(m))),
      h('td', { class: 'stats-bar', 'data-label': t('share') },
        region !== ALL && total && !total.suppressed
          ? h('meter', { min: 0, max, value: Number(total.count), 'aria-label': `${head}: ${total.count}` }) : null));
  };
  return h('table', { class: 'stats-table', id: 'stats-cases-table' },
    h('caption', {}, t('statsCasesCaption', { k })),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('region')),
      cols.map((m) => h('th', { scope: 'col', class: 'num' }, monthLabel(m))),
      h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, t('share'))))),
    h('tbody', {}, regions.map(line), line(ALL)));
}

function duration(ms) {
  const v = Number(ms);
  if (!(v >= 0)) return null;
  if (v < 3600000) return t('unitMin', { n: Math.round(v / 60000) });
  if (v < 172800000) return t('unitHour', { n: (v / 3600000).toFixed(1) });
  return t('unitDay', { n: (v / 86400000).toFixed(1) });
}

function valueCell(row, names, name, headLabel) {
  const i = names.indexOf(name);
  const v = row && !row.suppressed && i >= 0 && row.values ? row.values[i] : undefined;
  const text = v === undefined ? null : duration(v);
  if (text === null)
    return h('td', { class: 'num withheld', 'data-label': headLabel, dataset: { value: '' }, title: t('withheldTitle') },
      h('span', { 'aria-hidden': 'true' }, '–'), h('span', { class: 'sr-only' }, t('withheldTitle')));
  return h('td', { class: 'num', 'data-label': headLabel, dataset: { value: String(v) } }, text);
}

// stats names services without the enum's prefix (CHILD_PROTECTION)
function serviceLabel(name) {
  const full = String(name).startsWith('SERVICE_TYPE_') ? name : `SERVICE_TYPE_${name}`;
  const text = label(full);
  return text === full ? String(name) : text;
}

// Referrals: one line per service (and the total): count, median and 90th percentile of the
// time from the referral to its acceptance.
function referralsTable(tab) {
  const k = tab.k || 0;
  const names = tab.valueNames || [];
  const rows = (tab.rows || []).slice().sort((a, b) => (a.keys[0] === ALL) - (b.keys[0] === ALL)
    || String(a.keys[0]).localeCompare(String(b.keys[0])));
  if (!rows.some((r) => r.keys[0] !== ALL)) return h('p', { class: 'muted empty' }, t('none'));
  const heads = [t('service'), t('referralsCount'), t('acceptanceMedian'), t('acceptanceP90')];
  return h('table', { class: 'stats-table', id: 'stats-referrals-table' },
    h('caption', {}, t('statsReferralsCaption', { k })),
    h('thead', {}, h('tr', {}, heads.map((x, i) => h('th', { scope: 'col', class: i ? 'num' : null }, x)))),
    h('tbody', {}, rows.map((r) => h('tr', { dataset: { service: r.keys[0] } },
      h('th', { scope: 'row' }, r.keys[0] === ALL ? t('total') : serviceLabel(r.keys[0])),
      countCell('td', r, r.keys.join('|'), k, heads[1]),
      valueCell(r, names, 'acceptance_median_ms', heads[2]),
      valueCell(r, names, 'acceptance_p90_ms', heads[3])))));
}

// Renders what was loaded last (again after a change of language).
export function renderStats() {
  const panel = $('stats-panel');
  if (!last.loaded) return;
  if (last.hidden) {
    panel.hidden = true;
    panel.dataset.state = 'refused';
    return;
  }
  panel.hidden = false;
  panel.dataset.fromMs = String(last.fromMs);
  const from = monthLabel(new Date(last.fromMs).toISOString().slice(0, 7));
  const k = (last.cases && last.cases.k) || (last.referrals && last.referrals.k) || '';
  $('stats-note').textContent = k ? t('statsNote', { from, k }) : '';
  $('stats-error').textContent = last.reason ? t('statsUnavailable', { message: last.reason }) : '';
  replace($('stats-cases'), last.cases ? casesTable(last.cases) : null);
  replace($('stats-referrals'), last.referrals ? referralsTable(last.referrals) : null);
  $('stats-cases-h').hidden = !last.cases;
  $('stats-refs-h').hidden = !last.referrals;
  panel.dataset.state = last.cases && last.referrals ? 'ok' : last.cases || last.referrals ? 'partial' : 'unavailable';
  panel.dataset.loaded = String(Date.now());
}
