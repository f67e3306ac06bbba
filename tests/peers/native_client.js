#!/usr/bin/env node
// zenws test peer: the same client as ws_client.js on Node's built-in WebSocket (undici;
// run with `node --experimental-websocket` on Node 20). It has no TLS or header options:
// wss:// trusts the test CA through NODE_EXTRA_CA_CERTS; --header, --ca, --cert, --key and
// --deflate are refused (undici negotiates permessage-deflate on its own where supported).
'use strict';

const path = require('path');
const { parseArgs, plan, same, finish } = require(path.join(__dirname, '_client_common.js'));

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
  if (Object.keys(opts.headers).length || opts.ca || opts.cert || opts.key || opts.deflate) {
    throw new Error('native_client.js: --header/--ca/--cert/--key/--deflate are not supported');
  }
  if (typeof WebSocket !== 'function') {
    throw new Error('no global WebSocket: run node with --experimental-websocket (Node 20)');
  }
} catch (err) {
  process.stderr.write(`${err.message}\n`);
  process.exit(2);
}
const messages = plan(opts);
const summary = {
  ok: false, client: 'node-native', sent: 0, echoed: 0, mismatches: [], subprotocol: null,
  extensions: '', close_code: null, close_reason: null, error: null,
};

const timer = setTimeout(() => {
  summary.error = `timeout after ${opts.timeout}s`;
  finish(summary);
}, opts.timeout * 1000);

const ws = new WebSocket(opts.url, opts.subprotocols);
ws.binaryType = 'arraybuffer';

let next = 0;
function sendNext() {
  if (next >= messages.length) {
    ws.close(opts.closeCode, opts.closeReason);
    return;
  }
  ws.send(messages[next].data);
  summary.sent += 1;
}

ws.onopen = () => {
  summary.subprotocol = ws.protocol || null;
  summary.extensions = ws.extensions || '';
  sendNext();
};
ws.onmessage = (event) => {
  const got = typeof event.data === 'string' ? event.data : Buffer.from(event.data);
  if (!same(messages[next].data, got)) summary.mismatches.push(next);
  summary.echoed += 1;
  next += 1;
  sendNext();
};
ws.onerror = (event) => {
  summary.error = (event && event.message) || (event && event.error && String(event.error)) || 'error';
};
ws.onclose = (event) => {
  clearTimeout(timer);
  summary.close_code = event.code;
  summary.close_reason = event.reason;
  summary.ok = summary.error === null && summary.mismatches.length === 0 &&
    summary.echoed === messages.length && event.code === opts.closeCode;
  finish(summary);
};
