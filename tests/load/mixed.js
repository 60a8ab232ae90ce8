// A mixed API session, what a tenant's admin console and backend do together. One iteration
// is one session of ten requests: create a user (with an Idempotency-Key), read it, list the
// tenant's users, rename it, read the plan, list plans, read the subscription, query a day of
// usage, check an entitlement, deactivate the user. RATE sessions per second (default 10 =
// about 100 requests/s) over TENANTS tenants (default 4), each with its own API key.
//
//   k6 run -e BASE_URL=… -e TOKEN=… tests/load/mixed.js

import exec from 'k6/execution';
import { check } from 'k6';
import { SMOKE, RUN, api, arrivals, expect, num, tenants, thresholds } from './lib.js';

export const options = {
  scenarios: { mixed: arrivals(SMOKE ? 2 : 10, SMOKE ? 4 : 16) },
  thresholds: thresholds('mixed', 250),
  setupTimeout: '120s',
};

// New users are members: a key may only grant what it holds (tenants:read among it).
const SCOPES = ['tenants:read', 'users:read', 'users:write', 'plans:read', 'subscriptions:read', 'usage:read',
  'entitlements:read'];

export function setup() {
  return tenants('mixed', num('TENANTS', 4), SCOPES);
}

export default function (data) {
  const iter = exec.scenario.iterationInTest;
  const t = data.tenants[iter % data.tenants.length];
  const base = `/v1/tenants/${t.id}`;
  const as = (name, extra) => Object.assign({ token: t.key, name }, extra || {});

  const email = `u-${RUN}-${iter}@load.example`;
  const user = expect(
    api('POST', `${base}/users`, as('/v1/tenants/{id}/users', {
      body: { email, display_name: `Load ${iter}` },
      headers: { 'Idempotency-Key': `load-${RUN}-user-${iter}` },
    })),
    201, 'create user');
  if (user === null) return;
  const one = `${base}/users/${user.id}`;
  const read = expect(api('GET', one, as('/v1/tenants/{id}/users/{id}')), 200, 'read user');
  if (read !== null) check(read, { 'user as created': (u) => u.email === email });
  const page = expect(api('GET', `${base}/users?limit=20`, as('/v1/tenants/{id}/users')), 200, 'list users');
  if (page !== null) check(page, { 'a page of users': (p) => Array.isArray(p.data) && p.data.length > 0 });
  expect(api('PATCH', one, as('/v1/tenants/{id}/users/{id}', { body: { display_name: `Renamed ${iter}` } })),
    200, 'rename user');
  expect(api('GET', `/v1/plans/${data.plan}`, as('/v1/plans/{id}')), 200, 'read plan');
  expect(api('GET', '/v1/plans?limit=20', as('/v1/plans')), 200, 'list plans');
  const sub = expect(api('GET', `${base}/subscription`, as('/v1/tenants/{id}/subscription')), 200,
    'read subscription');
  if (sub !== null) check(sub, { 'subscription active': (s) => s.status === 'active' });
  const to = new Date();
  const from = new Date(to.getTime() - 24 * 3600 * 1000);
  const q = `metric=api_calls&granularity=hour&from=${from.toISOString()}&to=${to.toISOString()}`;
  expect(api('GET', `${base}/usage?${q}`, as('/v1/tenants/{id}/usage')), 200, 'query usage');
  expect(api('GET', `${base}/entitlements/api`, as('/v1/tenants/{id}/entitlements/{feature}')), 200,
    'check entitlement');
  expect(api('POST', `${one}/deactivate`, as('/v1/tenants/{id}/users/{id}/deactivate')), 200,
    'deactivate user');
}
