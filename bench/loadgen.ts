// Load generator of the benchmark; every mode has a hard wall-clock limit and prints one JSON line.
//   rtt   PORT COUNT SIZE WARMUP    one connection, one SIZE-byte echo in flight at a time
//                                   -> {median_us, p10_us, p90_us, p99_us, min_us, max_us, count}
//   rate  PORT SECS CONC SIZE       CONC workers: connect, one SIZE-byte echo, close, repeat
//                                   -> {conn_per_s, ok, errors, elapsed_s}
//   probe PORT TIMEOUT_S echo|stream|http retries one exchange until it works (exit 0) or times out (1)
//   scale PORT N CONC HOLD_S        opens N connections (at most CONC opening at once), each does one
//                                   64-byte echo and then stays idle; prints {open_s, ok, errors},
//                                   then holds them until "close" on stdin (or HOLD_S) and exits
//   solo  PORT SECS                 one "SRC" download read at full speed -> {fast_MBps}
//   slow  PORT SECS RATE            a "SRC" download read at RATE bytes/s, and beside it (after 1 s)
//                                   another read at full speed -> {fast_MBps, slow_MBps, slow_ok}
//   echobulk PORT SECS              one connection to the echo backend written as fast as it goes;
//                                   -> {echo_MBps} (bytes echoed back per second)
//   rr    PORT SECS CONC SIZE WARMUP_S  CONC connections to the echo backend, each sends SIZE bytes
//                                   and waits for the SIZE-byte reply, in a loop; WARMUP_S untimed
//                                   first -> {rps, p50_us, p99_us, max_us, count, all}
//   http  PORT SECS CONC WARMUP_S   CONC keep-alive HTTP/1.1 connections, each GET / and waits for
//                                   the whole response, in a loop -> {rps, p50_us, p99_us, ...}
// Host: 127.0.0.1 (BENCH_HOST overrides). The echo modes follow ../shared/bench/echo-client.js.
import { connect } from 'node:net'
import type { Socket } from 'node:net'

const host = process.env.BENCH_HOST ?? '127.0.0.1'
const [mode, portArg, ...rest] = process.argv.slice(2)
const port = Number(portArg)
const num = (i: number, d: number): number => (rest[i] === undefined ? d : Number(rest[i]))

function hardLimit (seconds: number, what: string): void {
  setTimeout(() => {
    process.stderr.write(`loadgen: ${what} exceeded its hard limit of ${seconds}s\n`)
    process.exit(3)
  }, seconds * 1000).unref()
}
const die = (msg: string): never => { process.stderr.write(`loadgen ${mode}: ${msg}\n`); process.exit(1) }
const out = (o: object): void => { process.stdout.write(JSON.stringify(o) + '\n') }
const r1 = (x: number): number => Math.round(x * 10) / 10
const now = (): number => Number(process.hrtime.bigint()) / 1e6 // ms

function rtt (count: number, size: number, warmup: number): void {
  hardLimit(60, 'rtt')
  const total = warmup + count
  const samples = new Float64Array(count)
  const payload = Buffer.alloc(size, 0x61)
  const sock = connect({ host, port, noDelay: true })
  let i = 0
  let got = 0
  let t0 = 0n
  let tag = 0
  const sendNext = (): void => {
    tag = i & 0xff
    payload[0] = tag // tag each message so a mixed-up echo is detected
    got = 0
    t0 = process.hrtime.bigint()
    sock.write(payload)
  }
  sock.on('connect', sendNext)
  sock.on('data', (d) => {
    if (got === 0 && d[0] !== tag) die('echoed data mismatch')
    got += d.length
    if (got < size) return
    const dt = Number(process.hrtime.bigint() - t0) / 1000
    if (got > size) die('too many bytes echoed')
    if (i >= warmup) samples[i - warmup] = dt
    i++
    if (i < total) { sendNext(); return }
    sock.destroy()
    samples.sort()
    const q = (p: number): number => samples[Math.min(count - 1, Math.floor(p * count))]
    const med = count % 2 === 1 ? samples[(count - 1) / 2] : (samples[count / 2 - 1] + samples[count / 2]) / 2
    out({ median_us: r1(med), p10_us: r1(q(0.1)), p90_us: r1(q(0.9)), p99_us: r1(q(0.99)), min_us: r1(samples[0]), max_us: r1(samples[count - 1]), count })
    process.exit(0)
  })
  sock.on('error', (e) => die(e.message))
  sock.on('close', () => { if (i < total) die('connection closed early') })
}

function rate (seconds: number, concurrency: number, size: number): void {
  hardLimit(seconds + 20, 'rate')
  const payload = Buffer.alloc(size, 0x62)
  const start = now()
  const deadline = start + seconds * 1000
  let ok = 0
  let errors = 0
  let running = concurrency
  const kinds = new Map<string, number>()
  const finish = (): void => {
    if (running > 0) return
    const elapsed = (now() - start) / 1000
    out({ conn_per_s: Math.round(ok / elapsed), ok, errors, elapsed_s: Math.round(elapsed * 1000) / 1000, concurrency, error_kinds: Object.fromEntries(kinds) })
    process.exit(ok > 0 ? 0 : 1)
  }
  const worker = (): void => {
    if (now() >= deadline) { running--; finish(); return }
    let done = false
    let got = 0
    const sock = connect({ host, port, noDelay: true })
    sock.setTimeout(5000)
    const end = (err: string | null): void => {
      if (done) return
      done = true
      sock.destroy()
      if (err !== null) {
        errors++
        kinds.set(err, (kinds.get(err) ?? 0) + 1)
        setTimeout(worker, 5) // a dead tunnel must not spin
      } else {
        ok++
        setImmediate(worker)
      }
    }
    sock.on('connect', () => sock.write(payload))
    sock.on('data', (d) => { got += d.length; if (got >= size) end(null) })
    sock.on('timeout', () => end('timeout'))
    sock.on('error', (e: NodeJS.ErrnoException) => end(e.code ?? e.message))
    sock.on('close', () => end(got >= size ? null : 'closed_early'))
  }
  for (let k = 0; k < concurrency; k++) worker()
}

function probe (timeoutS: number, kind: string): void {
  hardLimit(timeoutS + 2, 'probe')
  const deadline = Date.now() + timeoutS * 1000
  const request = kind === 'stream' ? Buffer.from('PING\n') : kind === 'http' ? Buffer.from('GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n') : Buffer.alloc(64, 0x63)
  const want = kind === 'stream' ? 5 : kind === 'http' ? 12 : 64
  const attempt = (): void => {
    let got = 0
    let done = false
    const sock = connect({ host, port })
    sock.setTimeout(2000)
    const fail = (): void => {
      if (done) return
      done = true
      sock.destroy()
      if (Date.now() >= deadline) die(`no answer via ${host}:${port}`)
      setTimeout(attempt, 100)
    }
    sock.on('connect', () => sock.write(request))
    sock.on('data', (d) => { got += d.length; if (got >= want) { done = true; sock.destroy(); process.exit(0) } })
    sock.on('timeout', fail)
    sock.on('error', fail)
    sock.on('close', fail)
  }
  attempt()
}

function scale (n: number, concurrency: number, holdS: number): void {
  hardLimit(holdS + 30, 'scale')
  const payload = Buffer.alloc(64, 0x64)
  const socks: Socket[] = []
  const start = now()
  let started = 0
  let ok = 0
  let errors = 0
  let pending = 0
  let reported = false
  const kinds = new Map<string, number>()
  const report = (): void => {
    if (reported || pending > 0 || started < n) return
    reported = true
    out({ open_s: Math.round(now() - start) / 1000, ok, errors, error_kinds: Object.fromEntries(kinds) })
    const closeAll = (): void => {
      for (const s of socks) s.destroy()
      setTimeout(() => process.exit(ok === n ? 0 : 1), 200)
    }
    process.stdin.on('data', (d) => { if (d.toString().includes('close')) closeAll() })
    process.stdin.on('end', closeAll)
    setTimeout(closeAll, holdS * 1000).unref()
  }
  const openOne = (): void => {
    if (started >= n) { report(); return }
    started++
    pending++
    let got = 0
    let settled = false
    const sock = connect({ host, port, noDelay: true })
    sock.setTimeout(15_000)
    const settle = (err: string | null): void => {
      if (settled) return
      settled = true
      pending--
      sock.setTimeout(0)
      if (err === null) { ok++; socks.push(sock) } else {
        errors++
        kinds.set(err, (kinds.get(err) ?? 0) + 1)
        sock.destroy()
      }
      if (errors > n / 10) die(`too many errors opening connections: ${JSON.stringify(Object.fromEntries(kinds))}`)
      openOne()
    }
    sock.on('connect', () => sock.write(payload))
    sock.on('data', (d) => { got += d.length; if (got >= 64) settle(null) })
    sock.on('timeout', () => settle('timeout'))
    sock.on('error', (e: NodeJS.ErrnoException) => settle(e.code ?? e.message))
    sock.on('close', () => settle('closed_early'))
  }
  for (let k = 0; k < concurrency; k++) openOne()
}

/** A "SRC" download; `rate` 0 = read as fast as possible, else read at about `rate` bytes/s. */
function download (rate: number, onError: (e: string) => void): { bytes: () => number, sock: Socket } {
  const sock = connect({ host, port, noDelay: true })
  let bytes = 0
  sock.on('connect', () => sock.write('SRC\n'))
  sock.on('error', (e) => onError(e.message))
  sock.on('close', () => onError('closed'))
  if (rate === 0) {
    sock.on('data', (d) => { bytes += d.length })
  } else {
    // Token bucket, 10 ms ticks: stop reading (the kernel buffer then fills, then TCP pushes back)
    // once ahead of the allowance, resume when the allowance caught up.
    const t0 = now()
    sock.on('data', (d) => {
      bytes += d.length
      if (bytes > rate * (now() - t0) / 1000) sock.pause()
    })
    const tick = setInterval(() => {
      if (sock.isPaused() && bytes <= rate * (now() - t0) / 1000) sock.resume()
    }, 10)
    sock.once('close', () => clearInterval(tick))
  }
  return { bytes: () => bytes, sock }
}

function solo (seconds: number): void {
  hardLimit(seconds + 20, 'solo')
  let finished = false
  const fast = download(0, (e) => { if (!finished) die(`fast stream: ${e}`) })
  setTimeout(() => {
    const b0 = fast.bytes()
    const t0 = now()
    setTimeout(() => {
      finished = true
      const mbps = (fast.bytes() - b0) / ((now() - t0) / 1000) / 1e6
      fast.sock.destroy()
      out({ fast_MBps: r1(mbps) })
      process.exit(0)
    }, seconds * 1000)
  }, 500)
}

function slow (seconds: number, rateBps: number): void {
  hardLimit(seconds + 20, 'slow')
  let finished = false
  let slowError: string | undefined
  const slowDl = download(rateBps, (e) => { if (!finished) slowError ??= e })
  // Let the slow stream back up first: its buffers along the path are full by the time we measure.
  setTimeout(() => {
    const fast = download(0, (e) => { if (!finished) die(`fast stream: ${e}`) })
    setTimeout(() => {
      const b0 = fast.bytes()
      const s0 = slowDl.bytes()
      const t0 = now()
      setTimeout(() => {
        finished = true
        const dt = (now() - t0) / 1000
        out({
          fast_MBps: r1((fast.bytes() - b0) / dt / 1e6),
          slow_MBps: Math.round((slowDl.bytes() - s0) / dt / 1e4) / 100,
          slow_ok: slowError === undefined,
          ...(slowError !== undefined ? { slow_error: slowError } : {})
        })
        fast.sock.destroy()
        slowDl.sock.destroy()
        process.exit(0)
      }, seconds * 1000)
    }, 500)
  }, 1000)
}

/** Writes as fast as the connection takes it and counts what the echo server sends back. */
function echobulk (seconds: number): void {
  hardLimit(seconds + 20, 'echobulk')
  const chunk = Buffer.alloc(64 * 1024, 0x65)
  const sock = connect({ host, port, noDelay: true })
  let back = 0
  let finished = false
  const pump = (): void => {
    for (let i = 0; i < 64 && !finished; i++) if (!sock.write(chunk)) { sock.once('drain', pump); return }
    if (!finished) setImmediate(pump)
  }
  sock.on('connect', pump)
  sock.on('data', (d) => { back += d.length })
  sock.on('error', (e) => { if (!finished) die(e.message) })
  sock.on('close', () => { if (!finished) die('connection closed early') })
  setTimeout(() => {
    const b0 = back
    const t0 = now()
    setTimeout(() => {
      finished = true
      out({ echo_MBps: r1((back - b0) / ((now() - t0) / 1000) / 1e6) })
      sock.destroy()
      process.exit(0)
    }, seconds * 1000)
  }, 500)
}

/**
 * Closed-loop request/response on CONC connections: each sends `request()` and waits until
 * `complete(buffered)` says how many bytes of a whole response it holds (0: not yet), then sends
 * the next. Latencies after WARMUP_S are kept (bounded: at most MAX_SAMPLES). Every connection
 * must stay up: an error, a close or a stalled response (5 s) ends the run with exit 1.
 */
const MAX_SAMPLES = 5_000_000
function closedLoop (what: string, seconds: number, concurrency: number, warmupS: number,
  request: Buffer, complete: (buf: Buffer) => number): void {
  hardLimit(seconds + warmupS + 20, what)
  const samples = new Float64Array(MAX_SAMPLES)
  let n = 0
  let all = 0 // every response, warm-up included (for CPU per request)
  let dropped = 0
  let measuring = false
  let finished = false
  let connected = 0
  let t0 = 0
  for (let k = 0; k < concurrency; k++) {
    const sock = connect({ host, port, noDelay: true })
    sock.setTimeout(5000)
    let buf: Buffer = Buffer.alloc(0)
    let sent = 0n
    const send = (): void => { sent = process.hrtime.bigint(); sock.write(request) }
    sock.on('connect', () => { connected++; send() })
    sock.on('data', (d: Buffer) => {
      if (finished) return
      buf = buf.length === 0 ? d : Buffer.concat([buf, d])
      const used = complete(buf)
      if (used === 0) return
      if (used < 0) die('malformed response')
      if (used !== buf.length) die('more data than one response (a reply arrived unasked)')
      buf = Buffer.alloc(0)
      all++
      if (measuring) {
        if (n < MAX_SAMPLES) samples[n++] = Number(process.hrtime.bigint() - sent) / 1000; else dropped++
      }
      send()
    })
    sock.on('timeout', () => { if (!finished) die(`connection ${k}: no response within 5 s`) })
    sock.on('error', (e) => { if (!finished) die(`connection ${k}: ${e.message}`) })
    sock.on('close', () => { if (!finished) die(`connection ${k} closed early`) })
  }
  setTimeout(() => {
    if (connected < concurrency) die(`only ${connected} of ${concurrency} connections up after warm-up`)
    measuring = true
    t0 = now()
    setTimeout(() => {
      finished = true
      measuring = false
      const elapsed = (now() - t0) / 1000
      const count = n + dropped
      const s = samples.subarray(0, n).sort()
      const q = (p: number): number => n === 0 ? NaN : s[Math.min(n - 1, Math.floor(p * n))]
      out({ rps: Math.round(count / elapsed), p50_us: r1(q(0.5)), p90_us: r1(q(0.9)), p99_us: r1(q(0.99)), max_us: r1(n === 0 ? NaN : s[n - 1]), count, all, concurrency, elapsed_s: Math.round(elapsed * 1000) / 1000 })
      process.exit(count > 0 ? 0 : 1)
    }, seconds * 1000)
  }, warmupS * 1000)
}

/** SIZE-byte requests to the echo backend: a response is complete when SIZE bytes are back. */
function rr (seconds: number, concurrency: number, size: number, warmupS: number): void {
  const request = Buffer.alloc(size, 0x72)
  closedLoop('rr', seconds, concurrency, warmupS, request, (buf) => buf.length < size ? 0 : (buf.length === size ? size : -1))
}

/** Keep-alive GET / against the HTTP backend; a response is complete after its headers and Content-Length bytes. */
function http (seconds: number, concurrency: number, warmupS: number): void {
  const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: keep-alive\r\n\r\n`)
  closedLoop('http', seconds, concurrency, warmupS, request, (buf) => {
    const end = buf.indexOf('\r\n\r\n')
    if (end < 0) return buf.length > 16384 ? -1 : 0
    const head = buf.toString('latin1', 0, end)
    if (!head.startsWith('HTTP/1.1 200')) return -1
    const m = /\r\ncontent-length: *(\d+)/i.exec(head)
    if (m === null) return -1
    const total = end + 4 + Number(m[1])
    return buf.length < total ? 0 : (buf.length === total ? total : -1)
  })
}

if (!Number.isInteger(port)) die('usage: loadgen.js rtt|rate|probe|scale|solo|slow|echobulk|rr|http PORT ...')
switch (mode) {
  case 'rtt': rtt(num(0, 2000), num(1, 64), num(2, 200)); break
  case 'rate': rate(num(0, 5), num(1, 16), num(2, 64)); break
  case 'probe': probe(num(0, 10), rest[1] ?? 'echo'); break
  case 'scale': scale(num(0, 10_000), num(1, 200), num(2, 60)); break
  case 'solo': solo(num(0, 5)); break
  case 'slow': slow(num(0, 5), num(1, 1_000_000)); break
  case 'echobulk': echobulk(num(0, 5)); break
  case 'rr': rr(num(0, 5), num(1, 50), num(2, 100), num(3, 1)); break
  case 'http': http(num(0, 5), num(1, 64), num(2, 1)); break
  default: die('unknown mode')
}
