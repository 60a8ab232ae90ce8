// PSP callbacks: Stripe-shaped `payment_intent.succeeded` events posted to the gateway's
// public `/v1/webhooks/psp/stripe`, each signed as Stripe signs them (`Stripe-Signature:
// t=…,v1=HMAC-SHA256(secret, "t.body")`). RATE callbacks per second (default 200); every
// tenth re-sends the event of 51 iterations before (long answered, and itself no re-send),
// as PSPs re-send, and must be answered as already seen. The
// intents are unknown to the platform, so each is verified, recorded once and applied to
// nothing: the cost of the callback path itself.
//
// PSP_WEBHOOK_SECRET: the secret the payment service verifies with (its sandbox's
// SANDBOX_WEBHOOK_SECRET, or one of STRIPE_WEBHOOK_SECRETS of a test-mode endpoint).
//
//   k6 run -e BASE_URL=… -e PSP_WEBHOOK_SECRET=whsec_… tests/load/psp_callbacks.js

import crypto from 'k6/crypto';
import exec from 'k6/execution';
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, RUN, SMOKE, arrivals, thresholds } from './lib.js';

const SECRET = __ENV.PSP_WEBHOOK_SECRET;

export const options = {
  scenarios: { psp_callbacks: arrivals(SMOKE ? 10 : 200, SMOKE ? 2 : 16) },
  thresholds: thresholds('psp_callbacks', 100),
};

export function setup() {
  if (!SECRET) throw new Error('PSP_WEBHOOK_SECRET: the secret the payment service verifies callbacks with');
}

function event(n) {
  return JSON.stringify({
    id: `evt_load_${RUN}_${n}`,
    type: 'payment_intent.succeeded',
    data: { object: { id: `pi_load_${RUN}_${n}`, status: 'succeeded', metadata: {} } },
  });
}

export default function () {
  const iter = exec.scenario.iterationInTest;
  const replay = iter % 10 === 9 && iter >= 51;
  const body = event(replay ? iter - 51 : iter);
  const t = Math.floor(Date.now() / 1000);
  const v1 = crypto.hmac('sha256', SECRET, `${t}.${body}`, 'hex');
  const res = http.post(`${BASE_URL}/v1/webhooks/psp/stripe`, body, {
    headers: { 'Content-Type': 'application/json', 'Stripe-Signature': `t=${t},v1=${v1}` },
    tags: { name: '/v1/webhooks/psp/stripe' },
  });
  const ok = check(res, { 'callback: 200': (r) => r.status === 200 });
  if (!ok) {
    console.error(`callback ${iter}: ${res.status} ${String(res.body).slice(0, 300)}`);
    return;
  }
  const r = JSON.parse(res.body);
  check(r, { [replay ? 'a re-send is known' : 'a new event is processed']: (x) => x.processed === !replay });
}
