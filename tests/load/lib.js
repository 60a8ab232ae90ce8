// Shared by the k6 scripts in this directory: configuration from the environment, a JSON API
// client that checks every status it expects, and the setup steps (tenants, plans,
// subscriptions, API keys) done through the public API like any client would.
//
// Environment (every script):
//   BASE_URL  the gateway, default http://127.0.0.1:8080
//   TOKEN     a bearer token of a platform operator (platform_admin of the operator tenant):
//             setup creates its own tenants, plans and keys with it
//   VUS       virtual users allocated up front; MAX_VUS the most k6 may add
//   DURATION  how long the load phase runs (k6 duration: 30s, 10m, …)
//   RATE      iterations started per second (what one iteration is, each script says)
//   P99_MS    the p99 latency bound of the load phase's requests (each script has a default)
//   SMOKE=1   a short low-rate run (15 s) that still enforces every threshold

import http from 'k6/http';
import { check } from 'k6';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const SMOKE = __ENV.SMOKE === '1';
export const DURATION = __ENV.DURATION || (SMOKE ? '15s' : '1m');
/// Distinguishes this run's tenants, plans and records from any earlier run's.
export const RUN = (__ENV.RUN_ID || Date.now().toString(36)).toLowerCase();

export function num(name, dflt) {
  const v = __ENV[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${v}: a positive number, please`);
  return n;
}

export function operatorToken() {
  if (!__ENV.TOKEN) {
    throw new Error('TOKEN: a bearer token of a platform operator is required (cargo xtask token …)');
  }
  return __ENV.TOKEN;
}

/// The load phase as a constant arrival rate: `rate` iterations per `timeUnit` whatever
/// the latency (a closed loop of VUs would slow down with the server and hide queueing).
export function arrivals(rate, vus, timeUnit = '1s') {
  return {
    executor: 'constant-arrival-rate',
    rate: num('RATE', rate),
    timeUnit,
    duration: DURATION,
    preAllocatedVUs: num('VUS', vus),
    maxVUs: num('MAX_VUS', Math.max(num('VUS', vus) * 4, 50)),
  };
}

/// No failed request, no failed check, and the p99 bound — for the named scenario's requests
/// only (setup's requests are checked, not timed).
export function thresholds(scenario, p99) {
  return {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    [`http_req_duration{scenario:${scenario}}`]: [`p(99)<${num('P99_MS', p99 * num('P99_SCALE', 1))}`],
    // Iterations k6 could not start for want of VUs: the target rate was not reached.
    dropped_iterations: ['count==0'],
  };
}

/// Sends a JSON request; `name` groups URLs with ids in k6's metrics (the route template).
export function api(method, path, { token, body, name, headers, responseCallback } = {}) {
  const params = {
    headers: Object.assign(
      { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      body === undefined ? {} : { 'Content-Type': 'application/json' },
      headers || {},
    ),
    tags: { name: name || path },
    responseType: 'text',
  };
  if (responseCallback) params.responseCallback = responseCallback;
  const payload = body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body);
  return http.request(method, `${BASE_URL}${path}`, payload, params);
}

/// Checks the status (logging the problem when it is not `status`); the parsed body or null.
export function expect(res, status, what) {
  const ok = check(res, { [`${what}: ${status}`]: (r) => r.status === status });
  if (!ok) {
    console.error(`${what}: expected ${status}, got ${res.status} ${String(res.body).slice(0, 300)}`);
    return null;
  }
  try {
    return res.body ? JSON.parse(res.body) : {};
  } catch (_) {
    return {};
  }
}

/// A request that must answer `status`; its body, or an exception (setup cannot go on).
export function must(method, path, status, opts) {
  const res = api(method, path, opts);
  const body = expect(res, status, `${method} ${opts.name || path}`);
  if (body === null) throw new Error(`${method} ${path} answered ${res.status}: ${res.body}`);
  return body;
}

/// A plan of a 19.00 monthly fee and `api_calls` at one cent each (prices are in minor
/// units), with an `api` entitlement limited to a trillion calls (never reached under load).
export function createPlan(token, id) {
  return must('POST', '/v1/plans', 201, {
    token,
    name: '/v1/plans',
    body: {
      id,
      name: `Load ${id}`,
      currency: 'EUR',
      interval: 'month',
      // The load is the point: the plan's tenant-wide budget must not be what limits it.
      rate_limit: { per_sec: 100000, burst: 100000 },
      prices: [
        { id: 'base', kind: 'flat', model: { type: 'flat', amount: '1900' } },
        { id: 'calls', kind: 'metered', metric: 'api_calls', model: { type: 'per_unit', unit_amount: '1' } },
      ],
      features: [{ key: 'api', type: 'limit', metric: 'api_calls', limit: '1000000000000', limit_kind: 'hard' }],
    },
  });
}

/// A new tenant subscribed to `plan`, and an API key of it with `scopes`:
/// `{ id, key }`.
export function tenantWithKey(token, name, plan, scopes) {
  const t = must('POST', '/v1/tenants', 201, {
    token,
    name: '/v1/tenants',
    body: { name, slug: name },
  });
  must('POST', `/v1/tenants/${t.id}/subscription`, 201, {
    token,
    name: '/v1/tenants/{id}/subscription',
    body: { plan_id: plan },
  });
  const key = must('POST', `/v1/tenants/${t.id}/api_keys`, 201, {
    token,
    name: '/v1/tenants/{id}/api_keys',
    body: { name: `load ${RUN}`, scopes },
  });
  return { id: t.id, key: key.secret };
}

/// `n` tenants on one new plan, each with a key of `scopes`.
export function tenants(prefix, n, scopes) {
  const token = operatorToken();
  const plan = `load-${prefix}-${RUN}`;
  createPlan(token, plan);
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(tenantWithKey(token, `load-${prefix}-${RUN}-${i}`, plan, scopes));
  }
  return { plan, tenants: out };
}
