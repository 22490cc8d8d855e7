// The NRM dashboard: one page, three views (coordinator, provider, shelter operator), driven
// by the gateway's JSON API and its Server-Sent Events. Nothing identifying is ever shown but
// the answer to an explicit "show identity" request that the server allowed.
import * as api from './api.js';
import { h, table, replace, shortId } from './dom.js';
import { drawMap } from './map.js';
import { loadStats, renderStats, hideStats } from './stats.js';
import { t, label, setLanguage, pickLanguage, formatTime, language } from './i18n.js';

const $ = (id) => document.getElementById(id);
const TOPICS = [
  'case.opened', 'case.linked', 'case.updated', 'case.consent_withdrawn', 'case.closed',
  'case.manager_changed', 'case.link_alert', 'case.status_decided', 'case.recovery_period_ending',
  'case.identity_disclosed', 'case.identity_erased', 'case.possible_duplicate',
  'referral.created', 'referral.accepted', 'referral.declined', 'referral.expired',
  'referral.completed', 'referral.revoked', 'referral.unroutable', 'referral.deadline_changed',
  'shelter.requested', 'shelter.allocated', 'shelter.waitlisted', 'shelter.released',
  'shelter.capacity_changed', 'shelter.no_show', 'shelter.request_withdrawn',
  'shelter.request_cancelled', 'notification.delivered', 'notification.failed',
];
const EVENT_FIELDS = new Set(['eventId', 'stream', 'seq', 'occurredAtMs', 'caseId', 'topic', 'causationId']);
const DECLINE_REASONS = ['DECLINE_REASON_NO_CAPACITY', 'DECLINE_REASON_NOT_ELIGIBLE',
  'DECLINE_REASON_UNABLE_TO_CONTACT', 'DECLINE_REASON_CLIENT_REFUSED', 'DECLINE_REASON_OTHER'];
const OUTCOME_REASONS = ['client_refused', 'lost_contact', 'not_eligible', 'no_capacity',
  'referred_elsewhere', 'client_moved', 'deceased', 'other'];
const RELEASE_REASONS = ['departed', 'transferred', 'no_show', 'declined', 'other'];
const FEED_MAX = 60;

const state = {
  session: null, // {agencyId, agencyType}
  views: [],
  view: '',
  cases: new Map(), // caseId -> {region, open}
  shelters: [],
  referrals: [],
  deliveries: [],
  alerts: [],
  feed: [],
  extraRegions: new Set(),
  configuredRegions: [], // [{code, name}] from the gateway's configuration
  events: null,
  timers: {},
  rendered: {},
};

// ---- small helpers -----------------------------------------------------------------------
function say(text) {
  $('status').textContent = text;
}

function problem(r) {
  const msg = (r.reply && (r.reply.errorMessage || r.reply.status)) || String(r.httpStatus);
  return r.httpStatus === 403 || (r.reply && r.reply.status === 'STATUS_PERMISSION_DENIED')
    ? t('refused', { message: msg }) : t('failed', { message: msg });
}

function debounce(name, fn, ms = 400) {
  clearTimeout(state.timers[name]);
  state.timers[name] = setTimeout(fn, ms);
}

function isType(type, name) {
  return type === name || type === `AGENCY_TYPE_${name}`;
}

function isCoordinator() {
  return !!state.session && isType(state.session.agencyType || '', 'COORDINATOR');
}

function select(id, labelText, options, labeller) {
  const sel = h('select', { id, 'aria-label': labelText },
    options.map((o) => h('option', { value: o }, labeller(o))));
  return sel;
}

// ---- session --------------------------------------------------------------------------------
async function start() {
  const langSel = $('lang');
  await setLanguage(pickLanguage());
  langSel.value = language();
  langSel.addEventListener('change', async () => {
    await setLanguage(langSel.value);
    renderAll();
  });
  $('signin-form').addEventListener('submit', onSignIn);
  $('signout').addEventListener('click', onSignOut);
  $('identity-close').addEventListener('click', closeIdentity);
  $('identity-ask').addEventListener('click', askIdentity);
  $('identity-dialog').addEventListener('close', () => replace($('identity-result')));
  $('stats-refresh').addEventListener('click', () => loadStats(isCoordinator()));
  const r = await api.currentSession();
  if (r.httpStatus === 200) await enter(r.reply);
  else showSignIn();
}

function showSignIn() {
  $('signin').hidden = false;
  $('views').hidden = true;
  $('signout').hidden = true;
  $('who').hidden = true;
  document.body.dataset.view = 'signin';
  $('agency').focus();
}

async function onSignIn(ev) {
  ev.preventDefault();
  $('signin-error').textContent = '';
  const r = await api.signIn($('agency').value.trim(), $('token').value);
  $('token').value = '';
  if (r.httpStatus !== 200) {
    $('signin-error').textContent = t('signInFailed');
    return;
  }
  await enter(r.reply);
}

async function onSignOut() {
  stopEvents();
  await api.signOut();
  state.session = null;
  state.cases.clear();
  state.shelters = [];
  state.referrals = [];
  state.deliveries = [];
  state.alerts = [];
  state.feed = [];
  for (const id of ['map', 'alerts', 'feed', 'occ-regions', 'occ-shelters', 'ref-table', 'deliveries',
    'my-referrals', 'my-shelters', 'holds', 'occupied']) replace($(id));
  hideStats();
  say('');
  showSignIn();
}

async function enter(session) {
  state.session = session;
  $('signin').hidden = true;
  $('views').hidden = false;
  $('signout').hidden = false;
  $('who').hidden = false;
  $('who').dataset.agency = session.agencyId;
  $('who').textContent = t('signedInAs', { agency: session.agencyId });
  const type = session.agencyType || '';
  if (isType(type, 'COORDINATOR')) state.views = ['coordinator'];
  else if (isType(type, 'SHELTER_OPERATOR')) state.views = ['shelter', 'provider'];
  else state.views = ['provider'];
  renderTabs();
  await show(state.views[0]);
}

const VIEW_TITLES = { coordinator: 'coordinatorView', provider: 'myReferrals', shelter: 'myShelters' };

function renderTabs() {
  replace($('tabs'), state.views.length < 2 ? [] : state.views.map((v) => h('button', {
    type: 'button', class: 'tab', 'aria-pressed': String(v === state.view), dataset: { view: v },
    onclick: () => show(v),
  }, t(VIEW_TITLES[v]))));
}

async function show(view) {
  state.view = view;
  for (const v of ['coordinator', 'provider', 'shelter']) $(`view-${v}`).hidden = v !== view;
  renderTabs();
  clearInterval(state.timers.poll);
  document.body.dataset.view = view;
  document.body.dataset.ready = '';
  say(t('loading'));
  const stats = loadStats(isCoordinator());
  if (view === 'coordinator') {
    startEvents();
    await loadCoordinator();
    state.timers.poll = setInterval(loadCoordinator, 30000);
  } else if (view === 'provider') {
    await loadProvider();
    state.timers.poll = setInterval(loadProvider, 15000);
  } else {
    await loadShelter();
    state.timers.poll = setInterval(loadShelter, 15000);
  }
  await stats;
  document.body.dataset.ready = view;
}

function renderAll() {
  if (!state.session) return;
  $('who').textContent = t('signedInAs', { agency: state.session.agencyId });
  renderTabs();
  renderStats();
  if (state.view === 'coordinator') {
    renderMap();
    renderOccupancy();
    renderReferralSummary();
    renderDeliveries();
    renderAlerts();
    renderFeed();
  } else if (state.view === 'provider') renderProvider();
  else renderShelter();
}

// ListDeliveries has no paging: its newest `max` of each final failed state (failed after
// every attempt, and undeliverable: an agency without subscription), newest first
async function listFailedDeliveries() {
  const [failed, undeliverable] = await Promise.all(['failed', 'undeliverable'].map((st) =>
    api.request('notify', 'list_deliveries', { state: st, max: 100 })));
  const items = [failed, undeliverable].flatMap((r) =>
    (r.ok && r.reply.deliveryList && r.reply.deliveryList.deliveries) || [])
    .map((d) => ({ ...d, _attrs: { dataset: { deliveryId: d.deliveryId, state: d.state, caseId: d.caseId || '' } } }));
  const r = failed.ok ? undeliverable : failed;
  return { ...r, ok: failed.ok && undeliverable.ok, items };
}

// ---- coordinator ----------------------------------------------------------------------------
async function loadCoordinator() {
  if (!state.configuredRegions.length) state.configuredRegions = await api.regions();
  const [cases, occ, refs, dels] = await Promise.all([
    api.listAll('intake', 'list_cases', { openOnly: true }, 'caseList', 'cases'),
    api.request('shelter', 'get_occupancy', { region: '' }),
    api.listAll('routing', 'list_referrals', { state: ['pending', 'accepted'] }, 'referralList', 'referrals'),
    listFailedDeliveries(),
  ]);
  const problems = [cases, occ, refs, dels].filter((r) => !r.ok);
  if (cases.ok) {
    // the listed open cases replace what we knew; closed ones seen live stay closed
    const next = new Map();
    for (const c of cases.items) next.set(c.caseId, { region: c.region, open: c.state !== 'closed' });
    for (const [id, c] of state.cases) if (!next.has(id) && c.live) next.set(id, c);
    state.cases = next;
  }
  if (occ.ok) state.shelters = (occ.reply.occupancy && occ.reply.occupancy.shelters) || [];
  if (refs.ok) state.referrals = refs.items;
  if (dels.ok) state.deliveries = dels.items;
  say(problems.length ? problem(problems[0]) : '');
  renderMap();
  renderOccupancy();
  renderReferralSummary();
  renderDeliveries();
  renderAlerts();
  renderFeed();
}

// The map's regions: the configured ones; only without any, those found in the data
function regionList() {
  if (state.configuredRegions.length) return state.configuredRegions.map((r) => r.code).sort();
  const set = new Set(state.extraRegions);
  for (const c of state.cases.values()) if (c.region) set.add(c.region);
  for (const sh of state.shelters) if (sh.region) set.add(sh.region);
  for (const r of state.referrals) if (r.region) set.add(r.region);
  return [...set].sort();
}

function openCounts() {
  const counts = new Map();
  for (const c of state.cases.values()) if (c.open && c.region) counts.set(c.region, (counts.get(c.region) || 0) + 1);
  return counts;
}

function renderMap() {
  const regions = regionList();
  const counts = openCounts();
  const summary = regions.map((r) => `${r} ${counts.get(r) || 0}`).join(', ');
  const names = new Map(state.configuredRegions.map((r) => [r.code, r.name || '']));
  const tip = (code, n) => (names.get(code) ? `${code} ${names.get(code)}: ${n}` : `${code}: ${n}`);
  const { svg, max } = drawMap(regions, counts, tip, t('mapLabel', { summary }));
  replace($('map'), svg);
  $('map-legend').textContent = t('legend', { max });
}

function renderOccupancy() {
  const byRegion = new Map();
  for (const sh of state.shelters) {
    const r = byRegion.get(sh.region) || { region: sh.region, capacity: 0, occupied: 0, held: 0, waitlist: 0 };
    r.capacity += sh.capacity || 0;
    r.occupied += sh.occupied || 0;
    r.held += sh.held || 0;
    r.waitlist += sh.waitlist || 0;
    byRegion.set(sh.region, r);
  }
  const free = (x) => Math.max(0, (x.capacity || 0) - (x.occupied || 0) - (x.held || 0));
  const bar = (x) => {
    const cap = x.capacity || 0;
    const used = (x.occupied || 0) + (x.held || 0);
    return h('meter', { min: 0, max: Math.max(cap, 1), value: Math.min(used, Math.max(cap, 1)), high: Math.max(cap, 1) * 0.85,
      'aria-label': `${used}/${cap}` });
  };
  const regions = [...byRegion.values()].sort((a, b) => a.region.localeCompare(b.region));
  replace($('occ-regions'), table([
    { head: t('region'), cell: (r) => r.region },
    { head: t('capacity'), cell: (r) => r.capacity, num: true },
    { head: t('occupied'), cell: (r) => r.occupied, num: true },
    { head: t('held'), cell: (r) => r.held, num: true },
    { head: t('free'), cell: (r) => free(r), num: true },
    { head: t('waitlist'), cell: (r) => r.waitlist, num: true },
    { head: '', cell: bar },
  ], regions, t('regions'), t('none')));
  const shelters = [...state.shelters].sort((a, b) => (a.region + a.name).localeCompare(b.region + b.name));
  replace($('occ-shelters'), table([
    { head: t('shelter'), cell: (x) => x.name || x.shelterId },
    { head: t('region'), cell: (x) => x.region },
    { head: t('capacity'), cell: (x) => x.capacity || 0, num: true },
    { head: t('occupied'), cell: (x) => x.occupied || 0, num: true },
    { head: t('held'), cell: (x) => x.held || 0, num: true },
    { head: t('free'), cell: free, num: true },
    { head: t('waitlist'), cell: (x) => x.waitlist || 0, num: true },
    { head: '', cell: bar },
  ], shelters, t('shelter'), t('none')));
}

function renderReferralSummary() {
  const now = Date.now();
  const rows = new Map();
  for (const r of state.referrals) {
    const key = `${r.service}|${r.region}`;
    const row = rows.get(key) || { service: r.service, region: r.region, pending: 0, accepted: 0, overdue: 0 };
    if (r.state === 'pending') {
      row.pending++;
      if (r.dueMs && Number(r.dueMs) < now) row.overdue++;
    } else if (r.state === 'accepted') row.accepted++;
    rows.set(key, row);
  }
  const list = [...rows.values()].sort((a, b) => b.overdue - a.overdue || (a.service + a.region).localeCompare(b.service + b.region));
  for (const r of list) if (r.overdue) r._attrs = { class: 'warn' };
  replace($('ref-table'), table([
    { head: t('service'), cell: (r) => label(r.service) },
    { head: t('region'), cell: (r) => r.region },
    { head: t('state_pending'), cell: (r) => r.pending, num: true },
    { head: t('state_accepted'), cell: (r) => r.accepted, num: true },
    { head: t('overdue'), cell: (r) => r.overdue, num: true },
  ], list, t('referralsTitle'), t('none')));
}

function renderDeliveries() {
  replace($('deliveries'), table([
    { head: t('topic'), cell: (d) => d.topic },
    { head: t('agency'), cell: (d) => d.agencyId },
    { head: t('case'), cell: (d) => h('code', { title: d.caseId || '' }, shortId(d.caseId)) },
    { head: t('state'), cell: (d) => t(`delivery_${d.state}`) },
    { head: t('channel'), cell: (d) => d.channel || '-' },
    { head: t('attempts'), cell: (d) => d.attempts || 0, num: true },
    { head: t('reason'), cell: (d) => h('span', { class: 'muted' }, String(d.lastError || '').slice(0, 80)) },
  ], state.deliveries, t('deliveriesTitle'), t('none')));
}

function renderAlerts() {
  if (!state.alerts.length) {
    replace($('alerts'), h('li', { class: 'muted' }, t('noAlerts')));
    return;
  }
  replace($('alerts'), state.alerts.map((a) => h('li', { class: 'alert', dataset: { eventId: a.eventId } },
    h('span', { class: 'badge' }, label(a.service)),
    ' ', h('span', {}, a.region || ''),
    ' ', h('code', { title: a.caseId }, shortId(a.caseId)),
    ' ', h('span', { class: 'muted' }, a.reason || ''),
    ' ', h('time', {}, formatTime(a.occurredAtMs)),
    h('span', { class: 'actions' },
      h('button', { type: 'button', onclick: () => openIdentity(a.caseId) }, t('showIdentity')),
      h('button', { type: 'button', onclick: () => { state.alerts = state.alerts.filter((x) => x !== a); renderAlerts(); } },
        t('acknowledge'))))));
}

function renderFeed() {
  replace($('feed'), state.feed.map((e) => h('li', { dataset: { topic: e.topic, caseId: e.caseId || '' } },
    h('time', { datetime: new Date(Number(e.occurredAtMs || 0)).toISOString() }, formatTime(e.occurredAtMs)),
    ' ', h('span', { class: `topic t-${e.topic.split('.')[0]}` }, e.topic),
    ' ', h('span', { class: 'region' }, e.region || ''),
    ' ', h('code', {}, shortId(e.caseId)))));
}

// ---- live events ----------------------------------------------------------------------------
function bodyOf(ev) {
  for (const [k, v] of Object.entries(ev)) if (!EVENT_FIELDS.has(k) && v && typeof v === 'object') return v;
  return {};
}

function regionOf(ev, body) {
  if (body.region) return body.region;
  const c = ev.caseId && state.cases.get(ev.caseId);
  if (c && c.region) return c.region;
  const sh = body.shelterId && state.shelters.find((x) => x.shelterId === body.shelterId);
  return sh ? sh.region : '';
}

function onEvent(msg) {
  let ev;
  try {
    ev = JSON.parse(msg.data);
  } catch (e) {
    return;
  }
  const topic = ev.topic || msg.type;
  if (!topic || topic === 'stream.head') return;
  const body = bodyOf(ev);
  const region = regionOf(ev, body);
  if (region) state.extraRegions.add(region);
  // categorical only: topic, region, time, short case id
  state.feed.unshift({ topic, region, occurredAtMs: ev.occurredAtMs, caseId: ev.caseId, eventId: ev.eventId });
  state.feed.length = Math.min(state.feed.length, FEED_MAX);
  if (topic === 'case.opened' && ev.caseId) {
    state.cases.set(ev.caseId, { region: body.region, open: true, live: true });
  } else if (topic === 'case.closed' && ev.caseId) {
    const c = state.cases.get(ev.caseId) || { region };
    state.cases.set(ev.caseId, { ...c, open: false, live: true });
  } else if (topic === 'referral.unroutable') {
    if (!state.alerts.some((a) => a.eventId === ev.eventId))
      state.alerts.unshift({ eventId: ev.eventId, caseId: ev.caseId, service: body.service, reason: body.reason, region, occurredAtMs: ev.occurredAtMs });
  } else if (topic === 'shelter.no_show') {
    // a bed held and never taken: the person has no bed and no request until asked again
    if (!state.alerts.some((a) => a.eventId === ev.eventId))
      state.alerts.unshift({ eventId: ev.eventId, caseId: ev.caseId, service: 'SERVICE_TYPE_SHELTER', reason: 'no_show', region, occurredAtMs: ev.occurredAtMs });
  }
  if (state.view !== 'coordinator') return;
  renderFeed();
  if (topic.startsWith('case.')) renderMap();
  if (topic === 'referral.unroutable') renderAlerts();
  if (topic.startsWith('referral.')) debounce('refs', refreshReferrals);
  if (topic.startsWith('shelter.')) debounce('occ', refreshOccupancy);
  if (topic === 'notification.failed') debounce('dels', refreshDeliveries);
  if (topic === 'case.opened' || topic.startsWith('referral.')) debounce('stats', () => loadStats(true), 3000);
}

async function refreshReferrals() {
  const r = await api.listAll('routing', 'list_referrals', { state: ['pending', 'accepted'] }, 'referralList', 'referrals');
  if (r.ok) { state.referrals = r.items; renderReferralSummary(); renderMap(); }
}
async function refreshOccupancy() {
  const r = await api.request('shelter', 'get_occupancy', { region: '' });
  if (r.ok) { state.shelters = (r.reply.occupancy && r.reply.occupancy.shelters) || []; renderOccupancy(); renderMap(); }
}
async function refreshDeliveries() {
  const r = await listFailedDeliveries();
  if (r.ok) { state.deliveries = r.items; renderDeliveries(); }
}

function startEvents() {
  if (state.events) return;
  const es = new EventSource('/api/v1/events?topics=case.,referral.,shelter.,notification.', { withCredentials: true });
  state.events = es;
  for (const topic of TOPICS) es.addEventListener(topic, onEvent);
  es.addEventListener('message', onEvent);
  es.addEventListener('open', () => {
    $('feed-state').textContent = t('feedLive');
    document.body.dataset.feed = 'open';
  });
  es.addEventListener('error', () => {
    // a refusal (403) or any answer that is not an event stream closes it for good
    if (es.readyState === EventSource.CLOSED) {
      $('feed-state').textContent = t('feedRefused');
      document.body.dataset.feed = 'closed';
    } else {
      $('feed-state').textContent = t('feedReconnecting');
      document.body.dataset.feed = 'reconnecting';
    }
  });
}

function stopEvents() {
  if (state.events) state.events.close();
  state.events = null;
  delete document.body.dataset.feed;
}

// ---- provider -------------------------------------------------------------------------------
async function loadProvider() {
  const r = await api.listAll('routing', 'list_referrals', { state: ['pending', 'accepted'] }, 'referralList', 'referrals');
  if (!r.ok) {
    say(problem(r));
    state.myReferrals = [];
  } else {
    say('');
    const me = state.session.agencyId;
    state.myReferrals = r.items.filter((x) => !x.providerAgencyId || x.providerAgencyId === me);
  }
  renderProvider();
}

async function act(service, field, message, reload) {
  const r = await api.request(service, field, message);
  say(r.ok ? t('done') : problem(r));
  await reload();
  return r;
}

function renderProvider() {
  const rows = (state.myReferrals || []).map((r) => ({ ...r, _attrs: { dataset: { referralId: r.referralId, state: r.state } } }));
  const actions = (r) => {
    const id = r.referralId;
    if (r.state === 'pending') {
      const reason = select(`decline-${id}`, t('declineReason'), DECLINE_REASONS, label);
      return h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'primary', 'data-action': 'accept',
          onclick: () => act('routing', 'respond_to_referral', { referralId: id, decision: 'REFERRAL_DECISION_ACCEPT' }, loadProvider) },
        t('accept')),
        reason,
        h('button', { type: 'button', 'data-action': 'decline',
          onclick: () => act('routing', 'respond_to_referral', { referralId: id, decision: 'REFERRAL_DECISION_DECLINE', declineReason: reason.value }, loadProvider) },
        t('decline')));
    }
    const why = select(`outcome-${id}`, t('outcomeReason'), OUTCOME_REASONS, (o) => t(`outcome_${o}`));
    return h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', 'data-action': 'complete',
        onclick: () => act('routing', 'complete_referral', { referralId: id, serviceDelivered: true }, loadProvider) },
      t('complete')),
      why,
      h('button', { type: 'button', 'data-action': 'complete-not',
        onclick: () => act('routing', 'complete_referral', { referralId: id, serviceDelivered: false, reason: why.value }, loadProvider) },
      t('completeNot')),
      h('button', { type: 'button', 'data-action': 'identity', onclick: () => openIdentity(r.caseId) }, t('showIdentity')));
  };
  const overdue = (r) => r.state === 'pending' && r.dueMs && Number(r.dueMs) < Date.now();
  replace($('my-referrals'), table([
    { head: t('case'), cell: (r) => h('code', { title: r.caseId }, shortId(r.caseId)) },
    { head: t('service'), cell: (r) => label(r.service) },
    { head: t('urgency'), cell: (r) => label(r.urgency) },
    { head: t('region'), cell: (r) => r.region },
    { head: t('due'), cell: (r) => h('span', { class: overdue(r) ? 'overdue' : null }, formatTime(r.dueMs), overdue(r) ? ` (${t('overdue')})` : '') },
    { head: t('state'), cell: (r) => label(r.state) },
    { head: t('actions'), cell: actions },
  ], rows, t('myReferrals'), t('none')));
}

// ---- shelter operator -----------------------------------------------------------------------
async function loadShelter() {
  const [occ, holds, occupied] = await Promise.all([
    api.request('shelter', 'get_occupancy', { region: '' }),
    api.listAll('shelter', 'list_allocations', { state: ['held'] }, 'allocationList', 'allocations'),
    api.listAll('shelter', 'list_allocations', { state: ['occupied'] }, 'allocationList', 'allocations'),
  ]);
  const me = state.session.agencyId;
  const bad = [occ, holds, occupied].find((r) => !r.ok);
  say(bad ? problem(bad) : '');
  const all = occ.ok ? (occ.reply.occupancy && occ.reply.occupancy.shelters) || [] : [];
  state.myShelters = all.filter((x) => !x.operatorAgencyId || x.operatorAgencyId === me);
  state.holds = holds.ok ? holds.items : [];
  state.occupiedBeds = occupied.ok ? occupied.items : [];
  renderShelter();
}

function renderShelter() {
  const names = new Map((state.myShelters || []).map((x) => [x.shelterId, x.name || x.shelterId]));
  const free = (x) => Math.max(0, (x.capacity || 0) - (x.occupied || 0) - (x.held || 0));
  replace($('my-shelters'), table([
    { head: t('shelter'), cell: (x) => x.name || x.shelterId },
    { head: t('region'), cell: (x) => x.region },
    { head: t('capacity'), cell: (x) => x.capacity || 0, num: true },
    { head: t('occupied'), cell: (x) => x.occupied || 0, num: true },
    { head: t('held'), cell: (x) => x.held || 0, num: true },
    { head: t('free'), cell: free, num: true },
    { head: t('waitlist'), cell: (x) => x.waitlist || 0, num: true },
  ], state.myShelters || [], t('myShelters'), t('none')));
  const allocCols = (extra) => [
    { head: t('case'), cell: (a) => h('code', { title: a.caseId }, shortId(a.caseId)) },
    { head: t('shelter'), cell: (a) => names.get(a.shelterId) || a.shelterId },
    { head: t('beds'), cell: (a) => a.beds || 0, num: true },
    extra,
    { head: t('actions'), cell: (a) => a._action() },
  ];
  const holds = (state.holds || []).map((a) => ({ ...a, _attrs: { dataset: { allocationId: a.allocationId } },
    _action: () => h('button', { type: 'button', class: 'primary', 'data-action': 'confirm',
      onclick: () => act('shelter', 'confirm_arrival', { allocationId: a.allocationId }, loadShelter) }, t('confirmArrival')) }));
  replace($('holds'), table(allocCols({ head: t('holdUntil'), cell: (a) => formatTime(a.holdUntilMs) }), holds, t('holdsTitle'), t('none')));
  const occ = (state.occupiedBeds || []).map((a) => ({ ...a, _attrs: { dataset: { allocationId: a.allocationId } },
    _action: () => {
      const why = select(`release-${a.allocationId}`, t('releaseReason'), RELEASE_REASONS, (o) => t(`release_${o}`));
      return h('div', { class: 'actions' }, why, h('button', { type: 'button', 'data-action': 'release',
        onclick: () => act('shelter', 'release_bed', { allocationId: a.allocationId, reason: why.value }, loadShelter) }, t('releaseBed')));
    } }));
  replace($('occupied'), table(allocCols({ head: t('time'), cell: (a) => formatTime(a.updatedMs) }), occ, t('occupiedTitle'), t('none')));
}

// ---- identity: only on request, only what the server allows ---------------------------------
function openIdentity(caseId) {
  $('identity-case').textContent = caseId || '';
  $('identity-dialog').dataset.caseId = caseId || '';
  replace($('identity-result'));
  $('identity-dialog').showModal();
  $('identity-purpose').focus();
}

function closeIdentity() {
  replace($('identity-result'));
  $('identity-dialog').close();
}

async function askIdentity() {
  const caseId = $('identity-dialog').dataset.caseId;
  const purpose = $('identity-purpose').value;
  const r = await api.request('intake', 'get_identity', { caseId, purpose });
  if (!r.ok) {
    replace($('identity-result'), h('p', { class: 'error', role: 'alert', 'data-result': 'refused' },
      t('identityRefused', { message: (r.reply && (r.reply.errorMessage || r.reply.status)) || r.httpStatus })));
    return;
  }
  const id = r.reply.identity || {};
  const p = id.person || {};
  const rows = [
    ['fullName', p.fullName], ['aliases', (p.aliases || []).join(', ')], ['dateOfBirth', p.dateOfBirth],
    ['phone', p.phone], ['documentNumber', p.documentNumber], ['notes', (id.notes || []).join(' / ')],
  ].filter(([, v]) => v);
  replace($('identity-result'), h('dl', { class: 'identity', 'data-result': 'shown' },
    rows.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v)])));
}

start();
