// Order to cash, end to end: one iteration is one customer's whole cycle. A new tenant
// subscribes to a plan (a 19.00 fee and 0.01 per API call), stores a card with the PSP,
// sends 100 calls of usage and cancels at once (its period ends now, the fee is credited
// back pro rata: all of it, to the cent, within minutes of the start); a billing run over
// that tenant is requested and polled to completion; its invoice is finalized (unless the
// deployment's grace period already did), charged through the PSP, and paid once the PSP's
// callback arrives; then its PDF is downloaded. RATE cycles per minute (default 30).
// Measures `order_to_cash_ms`, from requesting the run to the invoice being paid.
//
// Needs a PSP that settles test cards: the payment service's sandbox (`cargo xtask load`
// starts one) or Stripe in test mode (the payment service with a test STRIPE_API_KEY,
// -e PSP_PROVIDER=stripe: pm_card_visa is a Stripe test card).
//
//   k6 run -e BASE_URL=… -e TOKEN=… tests/load/order_to_cash.js

import exec from 'k6/execution';
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Trend } from 'k6/metrics';
import { RUN, SMOKE, api, arrivals, createPlan, expect, must, num, operatorToken, thresholds } from './lib.js';

const PROVIDER = __ENV.PSP_PROVIDER || 'sandbox';
const CALLS = 100;
/// 19.00 − 19.00 + 100 × 0.01, in cents: what every invoice must come to before tax.
const NET_MINOR = CALLS;
const cycle = new Trend('order_to_cash_ms', true);

export const options = {
  scenarios: { order_to_cash: arrivals(SMOKE ? 6 : 30, SMOKE ? 2 : 8, '1m') },
  thresholds: Object.assign(thresholds('order_to_cash', 1000), {
    order_to_cash_ms: [`p(99)<${num('CYCLE_P99_MS', 30000 * num('P99_SCALE', 1))}`],
  }),
  setupTimeout: '60s',
};

export function setup() {
  const plan = `load-o2c-${RUN}`;
  createPlan(operatorToken(), plan);
  return { plan };
}

/// Polls `path` (at most `secs` seconds, every 100 ms) until `done(body)`; the body or null.
function until(path, token, name, secs, done) {
  const deadline = Date.now() + secs * 1000;
  for (;;) {
    const b = expect(api('GET', path, { token, name }), 200, `GET ${name}`);
    if (b === null) return null;
    if (done(b)) return b;
    if (Date.now() > deadline) {
      console.error(`${path}: not there after ${secs} s: ${JSON.stringify(b).slice(0, 300)}`);
      check(b, { [`${name} in ${secs} s`]: () => false });
      return null;
    }
    sleep(0.1);
  }
}

export default function (data) {
  const token = operatorToken();
  const as = (name, extra) => Object.assign({ token, name }, extra || {});
  const slug = `load-o2c-${RUN}-${exec.scenario.iterationInTest}`;
  const t = must('POST', '/v1/tenants', 201, as('/v1/tenants', { body: { name: slug, slug } }));
  const base = `/v1/tenants/${t.id}`;
  must('POST', `${base}/subscription`, 201, as('/v1/tenants/{id}/subscription', { body: { plan_id: data.plan } }));
  must('PUT', `${base}/billing_profile`, 200, as('/v1/tenants/{id}/billing_profile', {
    body: { legal_name: `Load ${slug} GmbH`, address_lines: ['Teststraße 1'], country: 'DE',
      billing_email: `ap@${slug}.example` },
  }));
  must('POST', `${base}/payment_methods`, 200, as('/v1/tenants/{id}/payment_methods', {
    body: { provider: PROVIDER, psp_token: 'pm_card_visa', make_default: true },
  }));
  const now = new Date();
  const records = [];
  for (let j = 0; j < CALLS; j++) {
    records.push({ id: `${slug}-${j}`, tenant_id: t.id, metric: 'api_calls', quantity: 1,
      timestamp: now.toISOString() });
  }
  const report = must('POST', '/v1/usage', 200, as('/v1/usage', { body: { records } }));
  check(report, { 'usage accepted': (r) => r.accepted === CALLS });
  must('POST', `${base}/subscription/cancel`, 200, as('/v1/tenants/{id}/subscription/cancel', {
    body: { immediately: true },
  }));

  const asked = Date.now();
  const run = must('POST', '/v1/billing/runs', 202, as('/v1/billing/runs', {
    body: {
      period_start: new Date(now.getTime() - 24 * 3600 * 1000).toISOString(),
      period_end: new Date(Date.now() + 3600 * 1000).toISOString(),
      tenant_ids: [t.id],
    },
  }));
  if (!until(`/v1/billing/runs/${run.id}`, token, '/v1/billing/runs/{id}', 60,
    (r) => r.status === 'completed' || r.status === 'failed')) return;
  const list = until(`${base}/invoices`, token, '/v1/tenants/{id}/invoices', 60,
    (l) => l.data.length > 0);
  if (list === null) return;
  const one = `${base}/invoices/${list.data[0].id}`;
  if (list.data[0].status === 'draft') {
    // The deployment's grace period may finalize it first: 409 then says "already final".
    api('POST', `${one}/finalize`, as('/v1/tenants/{id}/invoices/{id}/finalize', {
      responseCallback: http.expectedStatuses(200, 409),
    }));
  }
  const paid = until(one, token, '/v1/tenants/{id}/invoices/{id}', 60, (i) => i.status === 'paid');
  if (paid === null) return;
  cycle.add(Date.now() - asked);
  if (!check(paid, { 'billed to the cent': (i) => i.net_minor === NET_MINOR })) {
    console.error(`invoice ${paid.id}: net ${paid.net_minor}, expected ${NET_MINOR}: ${JSON.stringify(paid.lines)}`);
  }
  const pdf = api('GET', `${one}/pdf`, as('/v1/tenants/{id}/invoices/{id}/pdf', {
    headers: { Accept: 'application/pdf' },
  }));
  check(pdf, {
    'invoice PDF: 200': (r) => r.status === 200,
    'a PDF': (r) => r.headers['Content-Type'] === 'application/pdf' && String(r.body).startsWith('%PDF'),
  });
}
