#!/usr/bin/env node
'use strict'
/*
 * utp_peer.js - a libutp reference peer for Crust's uTP (BEP 29) interop tests.
 *
 * libutp is reached through the npm package utp-native (pinned in package.json),
 * which ships a prebuilt N-API binary for linux-x64, so nothing is compiled.
 *
 * Install (in this directory; node_modules/ is not committed):
 *     npm ci --ignore-scripts
 *
 * Server:
 *     node utp_peer.js server [--host 127.0.0.1] [--port 0] [--mode echo|sink]
 *                             [--connections 1] [--timeout 60]
 *   prints  LISTENING <port>                 once bound
 *           ACCEPTED <ip> <port>             for each incoming connection
 *           RECEIVED <bytes> <sha256hex>     when a peer ends its side (both modes)
 *           ELAPSED_MS <ms>                  accept -> peer's end, same connection
 *   echo mode writes every byte back; sink mode only reads. After the peer's
 *   end the server ends its own side too, and it exits 0 once --connections
 *   connections have closed.
 *
 * Client:
 *     node utp_peer.js client --port P [--host 127.0.0.1] --bytes N [--mode echo|send]
 *                             [--seed S] [--local-port 0] [--timeout 60]
 *   echo: sends N bytes while reading the echo; when N bytes came back prints
 *           ECHOED <N> <sha256 of sent> <sha256 of received>
 *         and exits 0 only if the two digests match.
 *   send: sends N bytes, ends its side, waits for the peer to end its side, prints
 *           SENT <N> <sha256 of sent>
 *   both print  ELAPSED_MS <ms>  last: echo = connect() -> last echoed byte,
 *   send = connect() -> the peer's FIN (a sink ends its side once it has
 *   read everything; the client then waits up to 3 s more for the close).
 *   Throughput (MB/s) = N / 1e6 / (ms / 1000).
 *
 * Both roles take --udp-rcvbuf BYTES / --udp-sndbuf BYTES for SO_RCVBUF /
 * SO_SNDBUF of the UDP socket: default 4194304 (Linux caps the request at
 * net.core.rmem_max / wmem_max, then doubles it); 0 keeps the OS default
 * (212992 here). libutp advertises a 1 MiB receive window and bursts a full
 * window, so with the OS default a loopback run overflows the socket buffer
 * (RcvbufErrors in /proc/net/snmp) and each loss stalls the sender for an
 * RTO (>= 1 s): 16 MiB echo drops from ~80 MB/s to ~2.5 MB/s.
 *
 * Data: the byte stream is xorshift32 (x ^= x << 13; x ^= x >>> 17;
 * x ^= x << 5, on uint32) started from --seed (default 0x9E3779B9, must be
 * non-zero); each step's new state is emitted as 4 little-endian bytes, the
 * stream truncated to N bytes. Seed 1 starts 21 20 04 00 01 06 08 04 ..., so it is
 * easy to regenerate in C++.
 *
 * Errors (connection refused/timed out/reset, bind failure, bad arguments)
 * print  ERROR <message>  and exit 1. If --timeout seconds pass first the
 * peer prints  ERROR timeout after <s>s: <what it was doing>  and exits 2.
 * Every line goes to stdout at once (synchronous write, no buffering).
 * utp-native is IPv4 only: --host must be an IPv4 address or a name resolving
 * to one.
 */

const fs = require('fs')
const crypto = require('crypto')
const os = require('os')

const DEFAULT_SEED = 0x9E3779B9
const CHUNK = 64 * 1024
const DEFAULT_UDP_BUF = 4 * 1024 * 1024

function out (line) {
  // Synchronous write to fd 1: the line is in the pipe before we go on, even if
  // process.exit() follows immediately.
  fs.writeSync(1, line + '\n')
}

let exiting = false
function finish (code, line) {
  if (exiting) return
  exiting = true
  if (line) out(line)
  process.exit(code)
}

function fail (msg) {
  finish(1, 'ERROR ' + String(msg).replace(/\s+/g, ' ').trim())
}

process.on('uncaughtException', (err) => fail(err && err.message ? err.message : err))
process.on('unhandledRejection', (err) => fail(err && err.message ? err.message : err))

function usage (msg) {
  fail((msg ? msg + '; ' : '') + 'usage: utp_peer.js server|client [--host H] [--port P] ' +
    '[--mode echo|sink|send] [--bytes N] [--connections N] [--seed S] [--local-port P] ' +
    '[--udp-rcvbuf B] [--udp-sndbuf B] [--timeout S]')
}

function parseArgs (argv) {
  const opts = { _: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) { opts._.push(a); continue }
    const eq = a.indexOf('=')
    if (eq !== -1) { opts[a.slice(2, eq)] = a.slice(eq + 1); continue }
    if (i + 1 >= argv.length) usage('missing value for ' + a)
    opts[a.slice(2)] = argv[++i]
  }
  return opts
}

function intOpt (opts, name, dflt, min) {
  if (opts[name] === undefined) return dflt
  const s = String(opts[name])
  const v = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s, 16) : Number(s)
  if (!Number.isSafeInteger(v) || v < min) usage('bad --' + name + ' ' + s)
  return v
}

// xorshift32 byte stream, see the header comment.
class Stream {
  constructor (seed, total) {
    this.x = seed >>> 0
    this.left = total
    this.le = os.endianness() === 'LE'
  }

  next () { // returns a Buffer of up to CHUNK bytes, or null at the end
    if (this.left <= 0) return null
    const n = Math.min(CHUNK, this.left)
    const words = Math.ceil(n / 4)
    const buf = Buffer.allocUnsafe(words * 4)
    const u32 = this.le ? new Uint32Array(buf.buffer, buf.byteOffset, words) : null
    let x = this.x
    for (let i = 0; i < words; i++) {
      x ^= x << 13; x >>>= 0
      x ^= x >>> 17
      x ^= x << 5; x >>>= 0
      if (u32) u32[i] = x
      else buf.writeUInt32LE(x, i * 4)
    }
    this.x = x
    this.left -= n
    return n === buf.length ? buf : buf.subarray(0, n)
  }
}

function elapsedMs (t0) {
  return Number(process.hrtime.bigint() - t0) / 1e6
}

function loadUtp () {
  try {
    return require('utp-native')
  } catch (err) {
    fail('cannot load utp-native (run "npm ci --ignore-scripts" in ' + __dirname + '): ' + err.message)
  }
}

function errMessage (err) {
  if (!err) return 'unknown error'
  // utp-native maps libutp's codes to UTP_ECONNREFUSED / UTP_ECONNRESET / UTP_ETIMEDOUT
  return (err.code && err.message !== err.code) ? err.code + ' ' + err.message : (err.message || String(err))
}

function applyBuffers (utp, opts) {
  const rcv = intOpt(opts, 'udp-rcvbuf', DEFAULT_UDP_BUF, 0)
  const snd = intOpt(opts, 'udp-sndbuf', DEFAULT_UDP_BUF, 0)
  if (rcv) utp.setRecvBufferSize(rcv)
  if (snd) utp.setSendBufferSize(snd)
}

function runServer (opts) {
  const UTP = loadUtp()
  const host = opts.host || '127.0.0.1'
  const port = intOpt(opts, 'port', 0, 0)
  const mode = opts.mode || 'echo'
  if (mode !== 'echo' && mode !== 'sink') usage('server --mode must be echo or sink')
  const wanted = intOpt(opts, 'connections', 1, 1)

  let closed = 0
  let accepted = 0
  let state = 'waiting for a connection'
  const server = UTP.createServer()
  server.on('error', (err) => fail('server: ' + errMessage(err)))

  server.on('connection', (conn) => {
    if (accepted >= wanted) { // utp-native lifts the firewall again when a connection closes
      conn.on('error', () => {})
      conn.destroy()
      return
    }
    accepted++
    const t0 = process.hrtime.bigint()
    const hash = crypto.createHash('sha256')
    let bytes = 0
    out('ACCEPTED ' + conn.remoteAddress + ' ' + conn.remotePort)
    state = 'connection ' + accepted + ' open'
    if (accepted >= wanted) server.firewall(true) // refuse anything beyond --connections

    conn.on('error', (err) => fail('connection from ' + conn.remoteAddress + ':' + conn.remotePort +
      ': ' + errMessage(err) + ' after ' + bytes + ' bytes received'))
    conn.on('data', (data) => {
      bytes += data.length
      hash.update(data)
      if (mode === 'echo') conn.write(data) // buffered by the stream if libutp's window is full
    })
    conn.on('end', () => {
      out('RECEIVED ' + bytes + ' ' + hash.digest('hex'))
      out('ELAPSED_MS ' + elapsedMs(t0).toFixed(1))
      state = 'connection ' + accepted + ' closing (our FIN sent, waiting for its ack)'
      conn.end()
    })
    conn.on('close', () => {
      closed++
      state = closed + ' of ' + wanted + ' connections closed'
      if (closed >= wanted) {
        server.close()
        finish(0)
      }
    })
  })

  server.listen(port, host, () => {
    applyBuffers(server, opts)
    out('LISTENING ' + server.address().port)
  })
  return () => state
}

function runClient (opts) {
  const UTP = loadUtp()
  const host = opts.host || '127.0.0.1'
  if (opts.port === undefined) usage('client needs --port')
  const port = intOpt(opts, 'port', 0, 1)
  if (opts.bytes === undefined) usage('client needs --bytes')
  const total = intOpt(opts, 'bytes', 0, 0)
  const mode = opts.mode || 'echo'
  if (mode !== 'echo' && mode !== 'send') usage('client --mode must be echo or send')
  const seed = intOpt(opts, 'seed', DEFAULT_SEED, 1)
  if (seed > 0xffffffff) usage('--seed must fit in 32 bits')
  const localPort = intOpt(opts, 'local-port', 0, 0)

  const stream = new Stream(seed, total)
  const sentHash = crypto.createHash('sha256')
  const recvHash = crypto.createHash('sha256')
  let sent = 0
  let received = 0
  let done = false
  let state = 'connecting to ' + host + ':' + port

  const utp = new UTP()
  utp.on('error', (err) => fail('socket: ' + errMessage(err)))
  utp.bind(localPort) // port 0: an ephemeral one, as utp-native's connect() would do
  applyBuffers(utp, opts)

  const t0 = process.hrtime.bigint()
  const conn = utp.connect(port, host)
  conn.on('close', () => utp.close())

  conn.on('error', (err) => fail(errMessage(err) + ' (' + state + ', sent ' + sent +
    ', received ' + received + ')'))

  function pump () {
    for (;;) {
      const chunk = stream.next()
      if (!chunk) {
        state = mode === 'echo' ? 'all sent, waiting for the echo' : 'all sent, waiting for close'
        if (mode === 'send') conn.end()
        return
      }
      sentHash.update(chunk)
      sent += chunk.length
      if (!conn.write(chunk)) {
        conn.once('drain', pump)
        return
      }
    }
  }

  conn.on('connect', () => {
    state = 'sending'
    if (mode === 'echo' && total === 0) {
      // nothing to echo: report at once
      echoDone()
      return
    }
    pump()
  })

  function echoDone () {
    done = true
    const a = sentHash.digest('hex')
    const b = recvHash.digest('hex')
    const ms = elapsedMs(t0)
    out('ECHOED ' + received + ' ' + a + ' ' + b)
    out('ELAPSED_MS ' + ms.toFixed(1))
    if (a !== b || received !== total) {
      finish(1, 'ERROR echo mismatch: sent ' + total + ' bytes ' + a + ', got back ' + received + ' bytes ' + b)
      return
    }
    // close politely so the server sees our FIN, but don't hang on it
    state = 'echo complete, closing'
    conn.end()
    conn.removeAllListeners('error')
    conn.on('error', () => {})
    conn.on('close', () => finish(0))
    setTimeout(() => finish(0), 3000).unref()
  }

  conn.on('data', (data) => {
    if (done) return
    if (mode === 'send') {
      received += data.length // unexpected, but don't choke on it
      return
    }
    received += data.length
    recvHash.update(data)
    if (received > total) {
      fail('echo overrun: got ' + received + ' bytes back for ' + total + ' sent')
      return
    }
    if (received === total && sent === total) echoDone()
  })

  conn.on('end', () => {
    if (mode === 'echo' && !done) {
      fail('peer ended after echoing ' + received + ' of ' + total + ' bytes')
    }
  })

  if (mode === 'send') {
    // The peer's FIN is the sign that it has read everything (a sink ends its
    // side after our end). libutp only destroys sockets in its 500 ms timeout
    // sweep, so 'close' comes up to half a second later: don't time that.
    const report = (how) => {
      if (done) return
      done = true
      if (sent !== total || stream.left !== 0) {
        fail('connection ' + how + ' after sending ' + sent + ' of ' + total + ' bytes')
        return
      }
      out('SENT ' + sent + ' ' + sentHash.digest('hex'))
      out('ELAPSED_MS ' + elapsedMs(t0).toFixed(1))
      state = 'all sent and the peer ended, closing'
    }
    conn.on('end', () => {
      report('ended by the peer')
      setTimeout(() => finish(0), 3000).unref()
    })
    conn.on('close', () => {
      report('closed')
      finish(0)
    })
  }
  return () => state
}

function main () {
  const opts = parseArgs(process.argv.slice(2))
  const role = opts._[0]
  const timeout = Number(opts.timeout === undefined ? 60 : opts.timeout)
  if (!(timeout > 0 && timeout <= 86400)) usage('bad --timeout ' + opts.timeout + ' (seconds, at most 86400)')

  let describe
  if (role === 'server') describe = runServer(opts)
  else if (role === 'client') describe = runClient(opts)
  else usage(role ? 'unknown role ' + role : 'no role given')

  // The hard deadline: whatever happens, this process ends by itself.
  // It also keeps the event loop alive, so the process never just fades out.
  setTimeout(() => finish(2, 'ERROR timeout after ' + timeout + 's: ' + describe()), timeout * 1000)
}

main()
