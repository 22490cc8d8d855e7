"""The dashboard in a real browser against the real gateway and services (run by
tests/integration/test_dashboard.sh, which starts them). Prints one 'ok - ...' or 'not ok - ...'
line per check, the page load time, and writes a PNG screenshot of each view into OUT.

Environment: NRM_GATEWAY_URL, NRM_TOKEN (every agency's token in the test), NRMCTL, NRM_CONFIG,
NRM_CERTS (the certificate folder), NRM_REPORT (a SubmitReport JSON), NRM_REPORTER,
NRM_SHELTER_OPERATOR, NRM_STRANGER, NRM_OUT, NRM_EMPTY_REGION (a configured region with no
case, shelter or referral, which the map must show), NRM_STATS_K (the stats service's k),
NRM_STATS_PID (its process, stopped at the end to see "statistics unavailable") and
NRM_CASES_BEFORE (the cases opened before this script's report)."""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser  # noqa: E402

BASE = os.environ['NRM_GATEWAY_URL'].rstrip('/') + '/'
TOKEN = os.environ['NRM_TOKEN']
NRMCTL = os.environ['NRMCTL']
CONFIG = os.environ['NRM_CONFIG']
CERTS = os.environ['NRM_CERTS']
OUT = os.environ['NRM_OUT']
REPORT = os.environ['NRM_REPORT']
REPORTER = os.environ.get('NRM_REPORTER', 'police-ma-06')
SHELTER_OP = os.environ.get('NRM_SHELTER_OPERATOR', 'shelter-op-casa')
STRANGER = os.environ.get('NRM_STRANGER', 'consulate-ng')
APPEAR_S = float(os.environ.get('NRM_APPEAR_S', '10'))
EMPTY_REGION = os.environ.get('NRM_EMPTY_REGION', '')
STATS_K = int(os.environ.get('NRM_STATS_K', '11'))
STATS_PID = int(os.environ.get('NRM_STATS_PID', '0'))
CASES_BEFORE = int(os.environ.get('NRM_CASES_BEFORE', '0'))

passed = failed = 0
log = open(os.path.join(OUT, 'chromium.log'), 'ab')


def check(name, cond, detail=''):
    global passed, failed
    if cond:
        passed += 1
        print(f'ok - {name}', flush=True)
    else:
        failed += 1
        print(f'not ok - {name}' + (f': {detail}' if detail else ''), flush=True)
    return cond


def nrmctl(*args, cert='coordinator', stdin=None):
    return subprocess.run([NRMCTL, '--config', CONFIG, '--cert', os.path.join(CERTS, f'{cert}.cert'), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


def history(*prefixes, service='routing'):
    r = nrmctl('tail', '--service', service, '--from', '1', '--idle-exit', '1500', *prefixes)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def shot(b, name):
    path = os.path.join(OUT, f'{name}.png')
    b.screenshot(path)
    print(f'# screenshot {path}', flush=True)


def sign_in(b, agency, token=TOKEN, view=None):
    b.goto(BASE)
    b.wait("document.body.dataset.view === 'signin'", 15)
    b.eval("document.getElementById('agency').value = ''; document.getElementById('token').value = ''")
    b.type('#agency', agency)
    b.type('#token', token)
    b.click('#signin-form button[type=submit]')
    if view is None:
        return None
    return b.wait(f"document.body.dataset.ready === {json.dumps(view)}", 20)


def unexpected_errors(b, allowed=('status of 401', 'status of 403')):
    b.pump(0.2)
    return [e for e in b.errors if not any(a in (e or '') for a in allowed)]


def api_from_page(b, method, path, body=None, csrf=True):
    """A request made by the signed-in page itself (its cookie), as a script of the page could."""
    return b.eval(f"""(async () => {{
      const s = await fetch('/api/v1/session', {{credentials: 'same-origin'}});
      const token = s.ok ? (await s.json()).csrfToken : '';
      const headers = {{'Content-Type': 'application/json'}};
      if ({json.dumps(csrf)}) headers['X-CSRF-Token'] = token;
      const r = await fetch({json.dumps(path)}, {{method: {json.dumps(method)}, headers, credentials: 'same-origin',
        body: {json.dumps(None if body is None else json.dumps(body))} }});
      let text = ''; try {{ text = await r.text(); }} catch (e) {{}}
      return {{status: r.status, body: text.slice(0, 2000)}};
    }})()""")


def events_status(b):
    """The HTTP status the events stream answers this session with (the stream is aborted)."""
    return b.eval("""(async () => { const c = new AbortController();
      const r = await fetch('/api/v1/events?topics=case.', {credentials: 'same-origin', signal: c.signal});
      const s = r.status; c.abort(); return s; })()""")


def stats_from_page(b, message):
    """GetStatistics through the gateway with the page's session: the table, or None."""
    r = b.eval(f"""(async () => {{
      const s = await fetch('/api/v1/session', {{credentials: 'same-origin'}});
      const token = s.ok ? (await s.json()).csrfToken : '';
      const r = await fetch('/api/v1/stats/get_statistics', {{method: 'POST', credentials: 'same-origin',
        headers: {{'Content-Type': 'application/json', 'X-CSRF-Token': token}}, body: {json.dumps(json.dumps(message))} }});
      return r.ok ? await r.json() : null; }})()""")
    return (r or {}).get('statisticsTable')


def stats_requests(b):
    from_ms = b.eval("document.getElementById('stats-panel').dataset.fromMs")
    return ({'measure': 'cases', 'dimensions': ['region', 'month'], 'fromMs': from_ms},
            {'measure': 'referrals', 'dimensions': ['service'], 'fromMs': from_ms})


def panel_mismatches(b, cases, referrals):
    """What the panel shows differently from the tables (empty: the same figures)."""
    return b.eval(f"""(() => {{
      const out = [];
      const one = (root, tab) => {{
        const names = tab.valueNames || [];
        for (const r of tab.rows || []) {{
          const key = r.keys.join('|');
          const td = [...document.querySelectorAll(root + ' td[data-key]')].find((x) => x.dataset.key === key);
          if (!td) {{ out.push('no cell ' + key); continue; }}
          if (r.suppressed) {{
            if (td.dataset.suppressed !== 'true' || !td.innerText.includes('<' + tab.k)) out.push('not suppressed ' + key + ': ' + td.innerText);
          }} else if (td.dataset.suppressed !== 'false' || td.dataset.count !== String(r.count || '0') ||
                     td.innerText.trim() !== String(r.count || '0')) out.push(key + ': ' + td.innerText + ' for ' + r.count);
          for (const [i, name] of names.entries()) {{
            if (!name.startsWith('acceptance_')) continue;
            const tr = td.closest('tr');
            const cells = [...tr.querySelectorAll('td[data-value]')];
            const cell = cells[name === 'acceptance_median_ms' ? 0 : 1];
            const v = r.values && !r.suppressed ? r.values[i] : undefined;
            const want = v === undefined || v < 0 ? '' : String(v);
            if (!cell || cell.dataset.value !== want) out.push(key + ' ' + name + ': ' + (cell && cell.dataset.value) + ' for ' + want);
          }}
        }}
      }};
      one('#stats-cases', {json.dumps(cases)});
      one('#stats-referrals', {json.dumps(referrals)});
      return out; }})()""")


def panel_matches_api(b, attempts=6):
    """Refreshes the panel until it was drawn between two equal answers of the API; returns the
    tables and the mismatches."""
    cases = referrals = None
    for _ in range(attempts):
        q_cases, q_refs = stats_requests(b)
        before = (stats_from_page(b, q_cases), stats_from_page(b, q_refs))
        loaded = b.eval("document.getElementById('stats-panel').dataset.loaded || ''")
        b.click('#stats-refresh')
        b.wait(f"(document.getElementById('stats-panel').dataset.loaded || '') !== {json.dumps(loaded)}", 15)
        after = (stats_from_page(b, q_cases), stats_from_page(b, q_refs))
        if before == after and after[0] and after[1]:
            cases, referrals = after
            diff = panel_mismatches(b, cases, referrals)
            if not diff:
                return cases, referrals, diff
        time.sleep(0.5)
    if cases is None:
        return None, None, ['the statistics did not hold still']
    return cases, referrals, panel_mismatches(b, cases, referrals)


def total_of(tab):
    row = next((r for r in (tab or {}).get('rows', []) if all(k == '*' for k in r['keys'])), None)
    return None if not row or row.get('suppressed') else int(row.get('count', '0'))


def no_stats_panel(b):
    return b.eval("(() => { const p = document.getElementById('stats-panel'); return p.hidden && "
                  "p.dataset.state === 'refused' && !document.querySelector('#stats-panel table') && "
                  "!document.getElementById('stats-error').textContent; })()")


report = json.load(open(REPORT))
region = report['region']
person = report.get('person', {})
secrets = [v for v in (person.get('fullName'), person.get('phone'), person.get('documentNumber'),
                       person.get('dateOfBirth')) if v]

# --- 1. the coordinator: a report appears on the map and in the feed -------------------------
case_id = ''
with Browser(lang='en-GB', width=1366, height=900, log=log) as b:
    b.goto(BASE)
    b.wait("document.body.dataset.view === 'signin'", 15)
    timing = b.eval("""(() => { const n = performance.getEntriesByType('navigation')[0];
      return {dcl: Math.round(n.domContentLoadedEventEnd - n.startTime), load: Math.round(n.loadEventEnd - n.startTime),
              ready: Math.round(performance.now())}; })()""")
    print(f"# page load (navigation timing, sign-in page): DOMContentLoaded {timing['dcl']} ms, "
          f"load {timing['load']} ms, sign-in form shown {timing['ready']} ms", flush=True)
    shot(b, 'signin')
    sign_in(b, 'coordinator', token=TOKEN + '-wrong')
    check('a wrong token is refused in the page',
          b.wait("document.getElementById('signin-error').textContent.length > 0", 10) and
          b.eval("document.body.dataset.view") == 'signin')
    t0 = time.time()
    ready = sign_in(b, 'coordinator', view='coordinator')
    check('the coordinator signs in and sees the coordinator view', ready,
          b.eval("document.getElementById('status').textContent"))
    print(f'# signed-in coordinator view loaded in {int((time.time() - t0) * 1000)} ms', flush=True)
    check('the live feed is connected', b.wait("document.body.dataset.feed === 'open'", 10),
          b.eval("document.body.dataset.feed || ''"))
    tile = f"document.querySelector('#map g.tile[data-region={json.dumps(region)}]')"
    before = b.eval(f"{tile} ? Number({tile}.dataset.open) : 0") or 0
    r = nrmctl('submit', REPORT, cert=REPORTER)
    try:
        case_id = json.loads(r.stdout).get('caseRef', {}).get('caseId', '')
    except ValueError:
        pass
    check('nrmctl submit opens a case', r.returncode == 0 and case_id, r.stdout + r.stderr)
    t1 = time.time()
    on_map = b.wait(f"{tile} && Number({tile}.dataset.open) === {before + 1}", APPEAR_S)
    check(f'the report appears on the map ({region}: {before} -> {before + 1}) within {APPEAR_S:g} s', on_map,
          f"tile: {b.eval(f'{tile} ? {tile}.dataset.open : null')}")
    in_feed = b.wait(f"document.querySelector('#feed li[data-topic=\"case.opened\"][data-case-id={json.dumps(case_id)}]')",
                     APPEAR_S)
    check('the report appears in the live feed', in_feed)
    if on_map and in_feed:
        print(f'# the new case was on the map and in the feed {int((time.time() - t1) * 1000)} ms after submit', flush=True)
    b.wait(f"document.querySelector('#feed li[data-topic=\"referral.created\"][data-case-id={json.dumps(case_id)}]')", 5)
    check('the open referrals of the new case are counted by service and region',
          b.wait(f"[...document.querySelectorAll('#ref-table tbody tr')].some(r => r.innerText.includes({json.dumps(region)}))", 10))
    b.wait("document.querySelector('#occ-shelters table')", 5)
    time.sleep(0.5)
    text = b.eval('document.body.innerText')
    check('nothing identifying is on the coordinator view', not any(s in text for s in secrets))
    check('the map is labelled for assistive technology',
          b.eval("!!document.querySelector('#map svg[role=img][aria-label]')"))
    check('the feed is a live region', b.eval("document.getElementById('feed').getAttribute('aria-live') === 'polite'"))
    # the map is drawn from the configured regions, also one with no case, shelter or referral
    configured = [r['code'] for r in json.load(open(CONFIG)).get('regions', [])]
    drawn = b.eval("[...document.querySelectorAll('#map g.tile')].map(g => g.dataset.region)") or []
    check('the map has a tile for every configured region, and only those',
          sorted(drawn) == sorted(configured), f'drawn {drawn}, configured {configured}')
    if EMPTY_REGION:
        check(f'a configured region with no case ({EMPTY_REGION}) is on the map, with 0 open cases',
              b.eval(f"(document.querySelector('#map g.tile[data-region={json.dumps(EMPTY_REGION)}]') || {{}}).dataset?.open") == '0')
    # the statistics panel: the figures GetStatistics gives, suppressed cells shown as such
    check('the coordinator has the statistics panel',
          b.wait("document.getElementById('stats-panel').dataset.state === 'ok' && "
                 "!document.getElementById('stats-panel').hidden", 15),
          b.eval("document.getElementById('stats-panel').dataset.state + ' ' + document.getElementById('stats-error').textContent"))
    deadline = time.time() + 20
    while time.time() < deadline and total_of(stats_from_page(b, stats_requests(b)[0])) != CASES_BEFORE + 1:
        time.sleep(0.5)
    cases_tab, refs_tab, diff = panel_matches_api(b)
    check(f'the statistics count the {CASES_BEFORE + 1} cases', total_of(cases_tab) == CASES_BEFORE + 1,
          json.dumps(cases_tab)[:300])
    check('the panel shows the figures GetStatistics returns (cases by region and month, referrals by service, '
          'times to acceptance)', cases_tab and not diff, '; '.join(diff[:5]))
    n_supp = sum(1 for r in (cases_tab or {}).get('rows', []) if r.get('suppressed'))
    n_shown = sum(1 for r in (cases_tab or {}).get('rows', []) if not r.get('suppressed'))
    check(f'with k = {STATS_K} some cells are suppressed and some shown', n_supp > 0 and n_shown > 0,
          f'{n_supp} suppressed, {n_shown} shown')
    check(f'a suppressed cell reads "<{STATS_K}" with its reason for assistive technology',
          b.eval(f"""(() => {{ const c = document.querySelector('#stats-cases td[data-suppressed=true]');
            return !!c && c.innerText.includes('<{STATS_K}') && !/^[0-9]+$/.test(c.dataset.count || '') &&
              c.querySelector('.sr-only').textContent.includes('{STATS_K}'); }})()"""))
    check('the statistics tables have a caption and headers',
          b.eval("[...document.querySelectorAll('#stats-panel table')].length === 2 && "
                 "[...document.querySelectorAll('#stats-panel table')].every(t => t.caption && t.caption.textContent && "
                 "t.querySelectorAll('thead th[scope=col]').length > 1 && t.querySelectorAll('tbody th[scope=row]').length > 0)"))
    b.eval("document.getElementById('stats-panel').scrollIntoView()")
    time.sleep(0.3)
    shot(b, 'coordinator-statistics')
    b.eval("window.scrollTo(0, 0)")
    # undeliverable or failed notifications of the new case are in the failed-deliveries list
    deadline = time.time() + 20
    failed_ids = []
    while time.time() < deadline and not failed_ids:
        failed_ids = [e['notificationFailed']['deliveryId'] for e in history('notification.failed', service='notify')
                      if e.get('caseId') == case_id and e.get('notificationFailed', {}).get('deliveryId')]
        if not failed_ids:
            time.sleep(0.5)
    check('notify reports a delivery of the new case as failed (notification.failed)', failed_ids)
    if failed_ids:
        row = f"#deliveries tr[data-delivery-id={json.dumps(failed_ids[0])}]"
        check('... and the failed delivery is shown in the failed-deliveries list',
              b.wait(f"document.querySelector({json.dumps(row)})", APPEAR_S),
              b.eval("document.getElementById('deliveries').innerText.slice(0, 300)"))
        check('... with its state and case, and nothing identifying',
              b.eval(f"(() => {{ const r = document.querySelector({json.dumps(row)}); return !!r && "
                     f"['failed', 'undeliverable'].includes(r.dataset.state) && r.dataset.caseId === {json.dumps(case_id)} && "
                     f"r.innerText.includes({json.dumps(case_id[:8])}); }})()")
              and not any(x in b.eval("document.getElementById('deliveries').innerText") for x in secrets))
        b.eval(f"document.querySelector({json.dumps(row)}).scrollIntoView()")
        time.sleep(0.3)
        shot(b, 'coordinator-deliveries')
        b.eval("window.scrollTo(0, 0)")
    shot(b, 'coordinator')
    # the language switch: Arabic, right to left
    b.eval("(() => { const s = document.getElementById('lang'); s.value = 'ar'; s.dispatchEvent(new Event('change')); })()")
    check('Arabic is shown right to left', b.wait("document.documentElement.dir === 'rtl' && document.documentElement.lang === 'ar'", 5))
    time.sleep(0.3)
    shot(b, 'coordinator-ar')
    check('the statistics panel is in Arabic, a suppressed cell too',
          b.wait(f"""document.getElementById('stats-h').textContent === 'الإحصاءات' &&
            [...document.querySelectorAll('#stats-cases td[data-suppressed=true]')].every(c => c.innerText.includes('أقل من {STATS_K}'))""", 5))
    check('the statistics panel is laid out right to left',
          b.eval("getComputedStyle(document.getElementById('stats-panel')).direction === 'rtl' && (() => { "
                 "const t = document.querySelector('#stats-cases table'); const r = t.getBoundingClientRect(); "
                 "const first = t.querySelector('thead th').getBoundingClientRect(); return first.right > r.right - 2; })()"))
    b.viewport(390, 844, mobile=True, scale=2)
    time.sleep(0.4)
    check('on a phone the statistics panel fits the screen',
          b.eval("(() => { const p = document.getElementById('stats-panel'); "
                 "return p.getBoundingClientRect().width <= window.innerWidth && p.scrollWidth <= p.clientWidth + 1; })()"),
          str(b.eval("(() => { const p = document.getElementById('stats-panel'); "
                     "return [p.getBoundingClientRect().width, p.scrollWidth, p.clientWidth, window.innerWidth]; })()")))
    b.eval("document.getElementById('stats-panel').scrollIntoView()")
    time.sleep(0.3)
    shot(b, 'coordinator-statistics-phone')
    errs = unexpected_errors(b)
    check('no script error on the coordinator view', not errs, '; '.join(errs[:3]))

# --- 2. the provider accepts a referral in the page ------------------------------------------
created = [e for e in history('referral.created') if e.get('caseId') == case_id]
created.sort(key=lambda e: e['referralCreated'].get('service') == 'SERVICE_TYPE_SHELTER')
check('routing referred the new case', created, 'no referral.created for the case')
if created:
    ref = created[0]['referralCreated']
    ref_id, provider = ref['referralId'], ref['providerAgencyId']
    print(f'# provider {provider}, referral {ref_id}', flush=True)
    with Browser(lang='fr-FR', width=1366, height=900, log=log) as b:
        sign_in(b, provider)
        ready = b.wait("['provider', 'shelter'].includes(document.body.dataset.ready)", 20)
        if b.eval("document.body.dataset.ready") == 'shelter':
            b.click("#tabs button[data-view='provider']")
            ready = b.wait("document.body.dataset.ready === 'provider'", 20)
        check('the provider signs in and sees its referrals (in French)', ready and b.eval("document.documentElement.lang") == 'fr')
        row = f"#my-referrals tr[data-referral-id={json.dumps(ref_id)}]"
        check('the referral is in "my referrals"', b.wait(f"document.querySelector({json.dumps(row)})", 20))
        check("the provider's session shows no statistics panel (and no error about it)", no_stats_panel(b),
              b.eval("document.getElementById('stats-panel').dataset.state"))
        shot(b, 'provider')
        try:
            b.click(f"{row} button[data-action='accept']")
            clicked = True
        except Exception as e:  # noqa: BLE001
            clicked = False
            print(f'# {e}')
        accepted = clicked and b.wait(f"document.querySelector({json.dumps(row + '[data-state=accepted]')})", 10)
        check('the provider accepts it with a click', accepted, b.eval("document.getElementById('status').textContent"))
        seen = any(e.get('referralAccepted', {}).get('referralId') == ref_id for e in history('referral.accepted'))
        check("referral.accepted is on routing's stream", seen)
        # the identity: only on an explicit request with a purpose, as the server decides
        text = b.eval('document.body.innerText')
        check('nothing identifying is on the provider view before asking', not any(s in text for s in secrets))
        if accepted:
            b.click(f"{row} button[data-action='identity']")
            b.wait("document.getElementById('identity-dialog').open", 5)
            b.eval("document.getElementById('identity-purpose').value = 'service_delivery'")
            b.click('#identity-ask')
            result = b.wait("(document.querySelector('#identity-result [data-result]') || {}).dataset?.result", 10)
            check('"show identity" displays the server\'s answer (shown or refused)', result in ('shown', 'refused'), str(result))
            print(f'# identity for the accepted provider: {result}', flush=True)
            if result == 'shown':
                check('the identity shown is the one submitted',
                      b.eval("document.getElementById('identity-result').innerText").find(person.get('fullName', '?')) >= 0)
            shot(b, 'provider-identity')
            b.click('#identity-close')
            check('closing the dialog removes the identity from the page',
                  b.wait("!document.getElementById('identity-dialog').open && !document.querySelector('#identity-result *')", 5))
        b.viewport(390, 844, mobile=True, scale=2)
        time.sleep(0.3)
        shot(b, 'provider-phone')
        errs = unexpected_errors(b)
        check('no script error on the provider view', not errs, '; '.join(errs[:3]))

    # --- 3. a stranger sees nothing of it and can do nothing with it ---------------------------
    with Browser(lang='en-GB', width=1366, height=900, log=log) as b:
        sign_in(b, STRANGER, view=None)
        check('the stranger signs in (its own view)', b.wait("document.body.dataset.ready === 'provider'", 20))
        check("the stranger's session gets no coordinator view",
              b.eval("document.getElementById('view-coordinator').hidden && !document.querySelector('#map svg')"))
        check("the stranger's session shows no statistics panel", no_stats_panel(b))
        r = api_from_page(b, 'POST', '/api/v1/stats/get_statistics', {'measure': 'cases'})
        check("the stranger's session may not read statistics", r['status'] != 200, str(r)[:200])
        text = b.eval('document.body.innerText')
        check("the stranger's page shows neither the case nor the referral",
              case_id[:8] not in text and not b.eval(f"document.querySelector('tr[data-referral-id={json.dumps(ref_id)}]')"))
        r = api_from_page(b, 'POST', '/api/v1/intake/list_cases', {'openOnly': True})
        check("the stranger's session may not list cases", r['status'] != 200 and case_id not in r['body'], str(r))
        r = api_from_page(b, 'POST', '/api/v1/routing/list_referrals', {'state': ['pending', 'accepted']})
        check("the stranger's session lists none of the referral", ref_id not in r['body'], str(r)[:300])
        r = api_from_page(b, 'POST', '/api/v1/routing/complete_referral', {'referralId': ref_id, 'serviceDelivered': True})
        check("the stranger's session may not complete the referral", r['status'] != 200, str(r))
        r = api_from_page(b, 'POST', '/api/v1/intake/get_identity', {'caseId': case_id, 'purpose': 'contact'})
        check("the stranger's session may not see the identity",
              r['status'] != 200 and not any(s in r['body'] for s in secrets), str(r))
        st = events_status(b)
        check("the stranger's session may not follow the events", st == 403, str(st))
        shot(b, 'stranger')
    done = [e for e in history('referral.completed') if e.get('referralCompleted', {}).get('referralId') == ref_id]
    check('no referral.completed came of the stranger', not done)

# --- 4. the shelter operator --------------------------------------------------------------------
with Browser(lang='en-GB', width=1366, height=900, log=log) as b:
    # with the keyboard only: type, Tab to the next field, Enter
    b.goto(BASE)
    b.wait("document.body.dataset.view === 'signin'", 15)
    b.eval("document.getElementById('agency').focus()")
    b.send('Input.insertText', text=SHELTER_OP)
    b.key('Tab', 9)
    check('Tab moves from the agency to the token field', b.eval("document.activeElement.id") == 'token')
    b.send('Input.insertText', text=TOKEN)
    b.key('Enter', 13)
    ready = b.wait("document.body.dataset.ready === 'shelter'", 20)
    check('the shelter operator signs in and sees its shelters', ready and
          b.wait("document.querySelectorAll('#my-shelters tbody tr').length > 0", 10))
    shot(b, 'shelter')
    errs = unexpected_errors(b)
    check('no script error on the shelter view', not errs, '; '.join(errs[:3]))

# --- 5. the statistics service does not answer ---------------------------------------------------
if STATS_PID:
    os.kill(STATS_PID, signal.SIGTERM)
    with Browser(lang='en-GB', width=1366, height=900, log=log) as b:
        sign_in(b, 'coordinator', view=None)
        ready = b.wait("document.body.dataset.ready === 'coordinator'", 40)
        check('without the stats service the coordinator view still loads', ready)
        check('... and the panel says "statistics unavailable"',
              b.wait("document.getElementById('stats-panel').dataset.state === 'unavailable' && "
                     "!document.getElementById('stats-panel').hidden && "
                     "document.getElementById('stats-error').textContent.startsWith('Statistics unavailable') && "
                     "!document.querySelector('#stats-panel table')", 10),
              b.eval("document.getElementById('stats-panel').dataset.state + ': ' + document.getElementById('stats-error').textContent"))
        check('... and the rest of the view is there', b.eval("!!document.querySelector('#map svg')"))
        b.eval("document.getElementById('stats-panel').scrollIntoView()")
        time.sleep(0.3)
        shot(b, 'coordinator-statistics-unavailable')
        errs = unexpected_errors(b, allowed=('status of 401', 'status of 403', 'status of 50'))
        check('no script error without the stats service', not errs, '; '.join(errs[:3]))

print(f'{passed} passed, {failed} failed')
sys.exit(1 if failed else 0)
