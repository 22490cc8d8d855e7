// The gateway's JSON API: the session and the requests, proto3 JSON both ways.
let csrf = '';

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf && path !== '/api/v1/session') headers['X-CSRF-Token'] = csrf;
  if (method === 'DELETE' && csrf) headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { httpStatus: 0, reply: { status: 'STATUS_UNAVAILABLE', errorMessage: String(e) } };
  }
  let reply = {};
  try {
    reply = await res.json();
  } catch (e) {
    reply = {};
  }
  if (!res.ok && !reply.status) reply.status = res.status === 401 ? 'STATUS_UNAUTHENTICATED'
    : res.status === 403 ? 'STATUS_PERMISSION_DENIED' : 'STATUS_INTERNAL';
  return { httpStatus: res.status, reply };
}

export async function signIn(agencyId, token) {
  const r = await call('POST', '/api/v1/session', { agencyId, token });
  if (r.httpStatus === 200) csrf = r.reply.csrfToken || '';
  return r;
}

export async function currentSession() {
  const r = await call('GET', '/api/v1/session');
  if (r.httpStatus === 200) csrf = r.reply.csrfToken || '';
  return r;
}

export async function signOut() {
  const r = await call('DELETE', '/api/v1/session');
  csrf = '';
  return r;
}

// The configured regions [{code, name}] (GET /api/v1/regions), or [] when unavailable.
export async function regions() {
  const r = await call('GET', '/api/v1/regions');
  return r.httpStatus === 200 && Array.isArray(r.reply.regions) ? r.reply.regions : [];
}

// request('routing', 'list_referrals', {...}) -> {ok, reply, httpStatus}
export async function request(service, field, message) {
  const r = await call('POST', `/api/v1/${service}/${field}`, message || {});
  r.ok = r.httpStatus === 200 && r.reply.status === 'STATUS_OK';
  return r;
}

// All pages of a list request: the items under reply[resultField][itemsField].
export async function listAll(service, field, message, resultField, itemsField, maxPages = 20) {
  let items = [];
  let token = '';
  for (let i = 0; i < maxPages; i++) {
    const r = await request(service, field, { ...message, pageToken: token || undefined });
    if (!r.ok) return { ok: false, items, reply: r.reply, httpStatus: r.httpStatus };
    const list = r.reply[resultField] || {};
    items = items.concat(list[itemsField] || []);
    token = list.nextPageToken || '';
    if (!token) break;
  }
  return { ok: true, items };
}
