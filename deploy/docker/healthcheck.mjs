// Docker HEALTHCHECK for the reverselb server: GET https://127.0.0.1:$PORT/healthz must answer 200.
// Exit 0 = healthy, 1 = unhealthy. Only liveness is checked, so the (usually self-signed)
// certificate is not verified here.
import { request } from 'node:https'

const port = Number(process.env.PORT || 9999)
// An unspecified bind address (the default) is reached on loopback.
const bind = process.env.HOST
const host = bind === undefined || bind === '' || bind === '0.0.0.0' || bind === '::' ? '127.0.0.1' : bind

const req = request({ host, port, path: '/healthz', method: 'GET', rejectUnauthorized: false, timeout: 4000 }, (res) => {
  res.resume()
  if (res.statusCode !== 200) process.stderr.write(`healthcheck: /healthz answered ${res.statusCode}\n`)
  process.exit(res.statusCode === 200 ? 0 : 1)
})
req.on('timeout', () => req.destroy(new Error('timed out')))
req.on('error', (err) => {
  process.stderr.write(`healthcheck: https://${host}:${port}/healthz: ${err.message}\n`)
  process.exit(1)
})
req.end()
