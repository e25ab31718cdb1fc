// HTTP backend of the benchmark's keep-alive workload: a plain node:http server in its own process
// (loopback only), answering every request with a fixed ~100-byte body and keeping connections open.
// Usage: node dist/bench/http-backend.js PORT [host=127.0.0.1]. Exits on SIGTERM/SIGINT.
import { createServer } from 'node:http'

const port = Number(process.argv[2])
const host = process.argv[3] ?? '127.0.0.1'
if (!Number.isInteger(port)) {
  process.stderr.write('usage: http-backend.js PORT [host]\n')
  process.exit(2)
}

const BODY = Buffer.from('reverselb bench: a small keep-alive HTTP response body of about one hundred bytes, fixed size.....\n')

const server = createServer({ keepAlive: true, noDelay: true }, (req, res) => {
  req.resume()
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length })
  res.end(BODY)
})
// Idle keep-alive connections stay open for the whole measurement (the workload has no pauses anyway).
server.keepAliveTimeout = 60_000
server.headersTimeout = 65_000
server.maxRequestsPerSocket = 0
server.on('error', (e) => { process.stderr.write(`http-backend: ${e.message}\n`); process.exit(1) })
server.listen({ port, host, backlog: 4096 })
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0))
process.stdout.write(`http backend listening ${host}:${port}\n`)
