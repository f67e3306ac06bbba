#!/usr/bin/env node
// zenws test peer: a WebSocket client on the `ws` package. Connects to URL, sends each
// planned message, waits for its echo and compares it, closes, and prints one JSON summary
// line {"ok", "client", "sent", "echoed", "mismatches", "subprotocol", "extensions",
// "close_code", "close_reason", "error"}. Exit status 0 only when every echo matched and the
// close handshake finished. Run with no arguments for the options (see _client_common.js).
'use strict';

const fs = require('fs');
const path = require('path');
const WebSocket = require('ws');
const { parseArgs, plan, same, finish } = require(path.join(__dirname, '_client_common.js'));

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`${err.message}\n`);
  process.exit(2);
}
const messages = plan(opts);
const summary = {
  ok: false, client: 'ws', sent: 0, echoed: 0, mismatches: [], subprotocol: null,
  extensions: '', close_code: null, close_reason: null, error: null,
};

const timer = setTimeout(() => {
  summary.error = `timeout after ${opts.timeout}s`;
  finish(summary);
}, opts.timeout * 1000);

const ws = new WebSocket(opts.url, opts.subprotocols, {
  headers: opts.headers,
  perMessageDeflate: opts.deflate,
  ca: opts.ca ? fs.readFileSync(opts.ca) : undefined,
  cert: opts.cert ? fs.readFileSync(opts.cert) : undefined,
  key: opts.key ? fs.readFileSync(opts.key) : undefined,
  maxPayload: 256 * 1024 * 1024,
});

let next = 0;
function sendNext() {
  if (next >= messages.length) {
    ws.close(opts.closeCode, opts.closeReason);
    return;
  }
  const m = messages[next];
  ws.send(m.data, { binary: m.kind === 'binary' });
  summary.sent += 1;
}

ws.on('open', () => {
  summary.subprotocol = ws.protocol || null;
  summary.extensions = ws.extensions || '';
  sendNext();
});
ws.on('message', (data, isBinary) => {
  const got = isBinary ? Buffer.from(data) : data.toString('utf8');
  if (!same(messages[next].data, got)) summary.mismatches.push(next);
  summary.echoed += 1;
  next += 1;
  sendNext();
});
ws.on('close', (code, reason) => {
  clearTimeout(timer);
  summary.close_code = code;
  summary.close_reason = reason.toString('utf8');
  summary.ok = summary.error === null && summary.mismatches.length === 0 &&
    summary.echoed === messages.length && code === opts.closeCode;
  finish(summary);
});
ws.on('error', (err) => {
  summary.error = err.message;
});
