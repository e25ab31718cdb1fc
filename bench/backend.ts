// Backend of the benchmark (one process, two ports, loopback only):
//   ECHO_PORT   echoes every byte back (latency, connection rate, idle connections);
//               after bench/../shared/bench/echo-server.js.
//   STREAM_PORT the first line of a connection picks what it does:
//                 "PING\n"  answers "PONG\n" (readiness probe)
//                 "SRC\n"   sends data as fast as the connection takes it, until the peer leaves
//                 "SINK\n"  reads and discards everything
// Usage: node dist/bench/backend.js ECHO_PORT STREAM_PORT [host=127.0.0.1]
// Exits on SIGTERM/SIGINT.
import { createServer } from 'node:net'
import type { Socket } from 'node:net'

const echoPort = Number(process.argv[2])
const streamPort = Number(process.argv[3])
const host = process.argv[4] ?? '127.0.0.1'
if (!Number.isInteger(echoPort) || !Number.isInteger(streamPort)) {
  process.stderr.write('usage: backend.js ECHO_PORT STREAM_PORT [host]\n')
  process.exit(2)
}

const CHUNK = Buffer.alloc(256 * 1024, 0x5a)

const echo = createServer({ noDelay: true }, (sock) => {
  sock.on('data', (d) => sock.write(d))
  sock.on('end', () => sock.end())
  sock.on('error', () => sock.destroy())
})

function source (sock: Socket): void {
  const pump = (): void => {
    // Bounded per call: write until the socket asks us to wait, then continue on 'drain'.
    for (let i = 0; i < 1024 && !sock.destroyed; i++) {
      if (!sock.write(CHUNK)) { sock.once('drain', pump); return }
    }
    if (!sock.destroyed) setImmediate(pump)
  }
  pump()
}

const stream = createServer({ noDelay: true, allowHalfOpen: true }, (sock) => {
  let head = ''
  sock.on('error', () => sock.destroy())
  const onData = (d: Buffer): void => {
    head += d.toString('latin1')
    const nl = head.indexOf('\n')
    if (nl < 0) {
      if (head.length > 256) sock.destroy()
      return
    }
    sock.off('data', onData)
    const cmd = head.slice(0, nl)
    if (cmd === 'PING') { sock.end('PONG\n'); return }
    if (cmd === 'SRC') {
      sock.on('data', () => {})
      sock.on('end', () => sock.destroy())
      source(sock)
      return
    }
    if (cmd === 'SINK') {
      sock.on('data', () => {})
      sock.on('end', () => sock.end())
      return
    }
    sock.destroy()
  }
  sock.on('data', onData)
})

for (const [srv, port] of [[echo, echoPort], [stream, streamPort]] as const) {
  srv.on('error', (e) => { process.stderr.write(`backend: ${e.message}\n`); process.exit(1) })
  srv.listen({ port, host, backlog: 4096 })
}
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0))
process.stdout.write(`backend listening ${host}:${echoPort} (echo) ${host}:${streamPort} (stream)\n`)
