#!/usr/bin/env node
// zenws test peer: a WebSocket echo server on the `ws` package (installed into
// .cache/node-peers by tools/install-node-peers.sh; found through NODE_PATH).
//
//   node ws_echo_server.js [--host 127.0.0.1] [--port 0] [--deflate]
//        [--subprotocols a,b] [--tls-cert F --tls-key F [--tls-ca F --require-client-cert]]
//
// Echoes text as text and binary as binary. A text message "__close__ CODE [REASON]" makes
// the server close with that code instead. Prints to stdout, one line each:
//   READY <port>                       once listening
//   REQUEST {"path", "headers", "subprotocol", "extensions", "client_cert"}  per connection
//   CLOSED {"code", "reason"}          when a connection ends
// Loopback only: refuses a --host that is not 127.x, ::1 or localhost.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 0, deflate: false, subprotocols: [], requireClientCert: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') opts.host = next();
    else if (a === '--port') opts.port = Number(next());
    else if (a === '--deflate') opts.deflate = true;
    else if (a === '--subprotocols') opts.subprotocols = next().split(',').filter(Boolean);
    else if (a === '--tls-cert') opts.tlsCert = next();
    else if (a === '--tls-key') opts.tlsKey = next();
    else if (a === '--tls-ca') opts.tlsCa = next();
    else if (a === '--require-client-cert') opts.requireClientCert = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!/^(127\.|::1$|localhost$)/.test(opts.host)) throw new Error(`refusing non-loopback host ${opts.host}`);
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const handler = (req, res) => {
  res.writeHead(426, { 'content-type': 'text/plain' });
  res.end('WebSocket only\n');
};
const server = opts.tlsCert
  ? https.createServer({
      cert: fs.readFileSync(opts.tlsCert),
      key: fs.readFileSync(opts.tlsKey),
      ca: opts.tlsCa ? fs.readFileSync(opts.tlsCa) : undefined,
      requestCert: opts.requireClientCert,
      rejectUnauthorized: opts.requireClientCert,
    }, handler)
  : http.createServer(handler);

const wss = new WebSocketServer({
  server,
  perMessageDeflate: opts.deflate,
  handleProtocols: (offered) => {
    for (const p of opts.subprotocols) if (offered.has(p)) return p;
    return false;
  },
});

wss.on('connection', (ws, req) => {
  let clientCert = null;
  if (req.socket.getPeerCertificate) {
    const cert = req.socket.getPeerCertificate();
    if (cert && cert.subject) clientCert = cert.subject.CN || null;
  }
  const record = {
    path: req.url,
    headers: req.headers,
    subprotocol: ws.protocol || null,
    extensions: ws.extensions || '',
    client_cert: clientCert,
  };
  process.stdout.write(`REQUEST ${JSON.stringify(record)}\n`);
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const text = data.toString('utf8');
      const m = /^__close__ (\d+)(?: (.*))?$/s.exec(text);
      if (m) {
        ws.close(Number(m[1]), m[2] || '');
        return;
      }
    }
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code, reason) => {
    process.stdout.write(`CLOSED ${JSON.stringify({ code, reason: reason.toString('utf8') })}\n`);
  });
  ws.on('error', (err) => process.stderr.write(`ws error: ${err.message}\n`));
});

server.listen(opts.port, opts.host, () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const client of wss.clients) client.terminate();
    server.close();
    process.exit(0);
  });
}
