// GraphQL over HTTP conformance audit of a running Wayfinder server.
//
//   node audit.mjs http://127.0.0.1:8000/graphql [--bearer KEY]
//
// Runs graphql-http's `auditServer` (the audits of the GraphQL over HTTP spec)
// against the URL and prints one JSON document on stdout:
//
//   {"url": ..., "graphqlHttp": "1.23.1", "results": [
//     {"id", "name", "requirement": "MUST"|"SHOULD"|"MAY", "status": "ok"|"notice"|"warn"|"error",
//      "reason"?, "response"?: {"status", "contentType", "body"}}, ...]}
//
// Exit status: 0 when it ran (whatever the results; the caller judges them), 2 on usage errors
// or when the audit itself could not run (server unreachable).

import { readFileSync } from 'node:fs';
import { auditServer } from 'graphql-http';

const args = process.argv.slice(2);
const url = args.find((a) => !a.startsWith('--'));
if (!url) {
  console.error('usage: node audit.mjs URL [--bearer KEY]');
  process.exit(2);
}
const bearerAt = args.indexOf('--bearer');
const bearer = bearerAt >= 0 ? args[bearerAt + 1] : process.env.WAYFINDER_API_KEY;

// With keys on, every request needs Authorization; the audits' own headers are kept.
const fetchFn = bearer
  ? (input, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set('authorization', `Bearer ${bearer}`);
      return fetch(input, { ...init, headers });
    }
  : fetch;

async function describe(response) {
  if (!response) return undefined;
  let body = null;
  try {
    const text = await response.clone().text();
    try {
      body = JSON.parse(text);
    } catch {
      body = text.length > 2048 ? `${text.slice(0, 2048)}...` : text;
    }
  } catch {
    body = '<unreadable>';
  }
  return { status: response.status, contentType: response.headers.get('content-type'), body };
}

let version = 'unknown';
try {
  const pkg = new URL('./node_modules/graphql-http/package.json', import.meta.url);
  version = JSON.parse(readFileSync(pkg, 'utf8')).version;
} catch {
  // only informative
}

let results;
try {
  results = await auditServer({ url, fetchFn });
} catch (err) {
  console.error(`the audit could not run: ${err && err.stack ? err.stack : err}`);
  process.exit(2);
}

const out = [];
for (const r of results) {
  const entry = { id: r.id, name: r.name, requirement: r.name.split(' ', 1)[0], status: r.status };
  if (r.status !== 'ok') {
    entry.reason = r.reason;
    entry.response = await describe(r.response);
  }
  out.push(entry);
}
process.stdout.write(`${JSON.stringify({ url, graphqlHttp: version, results: out }, null, 2)}\n`);
