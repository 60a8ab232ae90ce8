// Usage ingestion: `POST /v1/usage` with batches of BATCH records (default 1,000), RATE
// batches per second (default 20 = 20,000 records/s) spread over TENANTS tenants (default 4),
// each sending with its own API key (scope usage:write). Every record must be accepted, once.
//
//   k6 run -e BASE_URL=… -e TOKEN=… tests/load/ingest.js

import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { SMOKE, RUN, api, arrivals, expect, num, tenants, thresholds } from './lib.js';

const BATCH = num('BATCH', 1000);
const accepted = new Counter('usage_records_accepted');
const refused = new Counter('usage_records_refused');

export const options = {
  scenarios: { ingest: arrivals(SMOKE ? 2 : 20, SMOKE ? 2 : 8) },
  thresholds: Object.assign(thresholds('ingest', 1000), {
    usage_records_refused: ['count==0'],
  }),
  setupTimeout: '120s',
};

export function setup() {
  return tenants('ingest', num('TENANTS', 4), ['usage:write']);
}

export default function (data) {
  const iter = exec.scenario.iterationInTest;
  const t = data.tenants[iter % data.tenants.length];
  const now = new Date().toISOString();
  const records = new Array(BATCH);
  for (let j = 0; j < BATCH; j++) {
    records[j] = {
      id: `${RUN}-${iter}-${j}`,
      tenant_id: t.id,
      user_id: `usr_${j % 50}`,
      metric: 'api_calls',
      quantity: 1,
      timestamp: now,
    };
  }
  const res = api('POST', '/v1/usage', { token: t.key, body: { records }, name: '/v1/usage' });
  const report = expect(res, 200, 'POST /v1/usage');
  if (report === null) {
    refused.add(BATCH);
    return;
  }
  accepted.add(report.accepted);
  // Every id is new: a duplicate or a rejection is a lost or double-counted record.
  refused.add(BATCH - report.accepted);
  if (report.accepted !== BATCH) {
    console.error(`batch ${iter}: ${report.accepted} accepted, ${report.duplicates} duplicates, ` +
      `rejected ${JSON.stringify(report.rejected.slice(0, 3))}`);
  }
}
