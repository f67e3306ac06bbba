// Shared by ws_client.js and native_client.js (zenws test peers): argument parsing,
// deterministic payloads and the JSON summary. Not a peer on its own.
'use strict';

const USAGE = `usage: CLIENT URL [--send KIND:SIZE]... [--repeat N] [--subprotocol P]...
  [--header "Name: value"]... [--ca FILE] [--cert FILE --key FILE] [--deflate]
  [--close-code N] [--close-reason TEXT] [--timeout SECONDS]
KIND is text (ASCII), utf8 (multi-byte characters; SIZE counts characters) or binary.
Default: --send text:16 --send binary:16. Each message is sent, its echo awaited and compared.`;

function parseArgs(argv) {
  const opts = {
    url: null, sends: [], repeat: 1, subprotocols: [], headers: {}, deflate: false,
    closeCode: 1000, closeReason: 'done', timeout: 20,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value\n${USAGE}`);
      return argv[++i];
    };
    if (a === '--send') {
      const [kind, size] = next().split(':');
      if (!['text', 'utf8', 'binary'].includes(kind) || !/^\d+$/.test(size || '')) {
        throw new Error(`bad --send ${kind}:${size}\n${USAGE}`);
      }
      opts.sends.push({ kind, size: Number(size) });
    } else if (a === '--repeat') opts.repeat = Number(next());
    else if (a === '--subprotocol') opts.subprotocols.push(next());
    else if (a === '--header') {
      const h = next();
      const idx = h.indexOf(':');
      opts.headers[h.slice(0, idx).trim()] = h.slice(idx + 1).trim();
    } else if (a === '--ca') opts.ca = next();
    else if (a === '--cert') opts.cert = next();
    else if (a === '--key') opts.key = next();
    else if (a === '--deflate') opts.deflate = true;
    else if (a === '--close-code') opts.closeCode = Number(next());
    else if (a === '--close-reason') opts.closeReason = next();
    else if (a === '--timeout') opts.timeout = Number(next());
    else if (a.startsWith('--')) throw new Error(`unknown argument ${a}\n${USAGE}`);
    else if (opts.url === null) opts.url = a;
    else throw new Error(`unexpected argument ${a}\n${USAGE}`);
  }
  if (opts.url === null) throw new Error(USAGE);
  const host = new URL(opts.url).hostname.replace(/^\[|\]$/g, '');
  if (!/^(127\.|::1$|localhost$)/.test(host)) throw new Error(`refusing non-loopback URL ${opts.url}`);
  if (opts.sends.length === 0) opts.sends = [{ kind: 'text', size: 16 }, { kind: 'binary', size: 16 }];
  return opts;
}

const UTF8_CYCLE = ['é', '€', '😀', 'ж', 'a'];

// The i-th message of the plan: a Buffer for binary, a string for text (same on every peer).
function payload(index, kind, size) {
  if (kind === 'binary') {
    const buf = Buffer.alloc(size);
    for (let j = 0; j < size; j++) buf[j] = (index * 31 + j) % 256;
    return buf;
  }
  if (kind === 'utf8') {
    let s = '';
    for (let j = 0; j < size; j++) s += UTF8_CYCLE[(index + j) % UTF8_CYCLE.length];
    return s;
  }
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let j = 0; j < size; j++) s += alphabet[(index * 7 + j) % alphabet.length];
  return s;
}

function plan(opts) {
  const out = [];
  for (let r = 0; r < opts.repeat; r++) for (const s of opts.sends) out.push(s);
  return out.map((s, i) => ({ kind: s.kind, data: payload(i, s.kind, s.size) }));
}

function same(expected, got) {
  if (typeof expected === 'string') return typeof got === 'string' && got === expected;
  return Buffer.isBuffer(got) && Buffer.compare(expected, got) === 0;
}

function finish(summary) {
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(summary.ok ? 0 : 1);
}

module.exports = { parseArgs, plan, same, finish, payload };
