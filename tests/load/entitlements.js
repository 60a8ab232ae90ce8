// Entitlement checks: `GET /v1/tenants/{id}/entitlements/api`, what a product asks before
// serving a metered call. RATE checks per second (default 500) over TENANTS tenants (default
// 4), each with its own API key (scope entitlements:read). Every check must be allowed.
//
//   k6 run -e BASE_URL=… -e TOKEN=… tests/load/entitlements.js

import exec from 'k6/execution';
import { check } from 'k6';
import { SMOKE, api, arrivals, expect, num, tenants, thresholds } from './lib.js';

export const options = {
  scenarios: { entitlements: arrivals(SMOKE ? 20 : 500, SMOKE ? 4 : 32) },
  thresholds: thresholds('entitlements', 50),
  setupTimeout: '120s',
};

export function setup() {
  return tenants('entitle', num('TENANTS', 4), ['entitlements:read']);
}

export default function (data) {
  const t = data.tenants[exec.scenario.iterationInTest % data.tenants.length];
  const res = api('GET', `/v1/tenants/${t.id}/entitlements/api`, {
    token: t.key,
    name: '/v1/tenants/{id}/entitlements/{feature}',
  });
  const e = expect(res, 200, 'GET entitlement');
  if (e !== null) check(e, { 'entitlement allowed': (x) => x.allowed === true && x.reason === 'ok' });
}
