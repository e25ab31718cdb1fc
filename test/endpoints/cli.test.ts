import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import { connect } from '@nats-io/transport-node'
import { runCli, runCliToEnd } from '../fixtures/cli.js'
import { eventually, freePort } from '../fixtures/net.js'
import { api, httpsGetPinned, portIsClosed } from './helpers.js'
import type { Msg } from '@nats-io/transport-node'

describe('endpoints: reverselb server CLI options', function () {
  this.timeout(30_000)

  it('serves the REST API on --httpport and runs NATS on $NATS_PORT, and stops both on SIGTERM', async function () {
    const [port, httpPort, natsPort] = [await freePort(), await freePort(), await freePort()]
    const server = runCli(['-t', 'cli-secret', 'server', '-p', String(port), '--host', '127.0.0.1', '--httpport', String(httpPort), '--dynport', String(await freePort())],
      { NATS_PORT: String(natsPort) })
    try {
      await server.waitFor(/fingerprint: [0-9A-F:]{95}/)
      expect(server.stderr).not.to.match(/not available in this version/)
      expect(server.stderr).to.match(new RegExp(`HTTP API and dashboard listening on http://127\\.0\\.0\\.1:${httpPort}/`))
      expect(server.stderr).to.match(new RegExp(`NATS endpoint listening on tls://127\\.0\\.0\\.1:${natsPort}`))
      expect((await api(`http://127.0.0.1:${httpPort}`, '/healthz')).status).to.equal(200)
      expect((await api(`http://127.0.0.1:${httpPort}`, '/services')).status).to.equal(401)
      expect((await api(`http://127.0.0.1:${httpPort}`, '/services', { token: 'cli-secret' })).body.services).to.deep.equal([])
      // The NATS port speaks TLS and takes the token (the certificate is the self-signed one: not checked here).
      const nc = await connect({ servers: `127.0.0.1:${natsPort}`, token: 'cli-secret', tls: { rejectUnauthorized: false } as never, reconnect: false })
      const got = new Promise<Msg>(resolve => nc.subscribe('reverselb.>', { callback: (_e, m) => resolve(m) }))
      await nc.flush()
      // A wrong tunnel token is published as reverselb.auth.failure.
      const intruder = runCli(['-t', 'wrong', 'tunnel', '-e', `127.0.0.1:${port}`, '-b', '127.0.0.1:1', '-s', 'x', '-i'])
      try { await intruder.waitFor(/authorization failed/) } finally { await intruder.stop() }
      const msg = await Promise.race([got, new Promise<undefined>(resolve => setTimeout(() => resolve(undefined), 5000))])
      await nc.close()
      expect(msg?.subject).to.equal('reverselb.auth.failure')
      expect(server.stderr).not.to.contain('cli-secret')
    } finally {
      expect(await server.stop()).to.equal(0)
    }
    expect(await portIsClosed(httpPort)).to.equal(true)
    expect(await portIsClosed(natsPort)).to.equal(true)
  })

  it('takes its nats-server down with it when it is killed with SIGKILL', async function () {
    const [port, natsPort] = [await freePort(), await freePort()]
    const server = runCli(['-t', 'cli-secret', 'server', '-p', String(port), '--host', '127.0.0.1', '--natsport', String(natsPort), '--dynport', String(await freePort())])
    let natsPid: number | undefined
    try {
      const [, pid] = await server.waitFor(/nats-server pid (\d+)/)
      natsPid = Number(pid)
      await server.waitFor(/fingerprint: /)
      expect(server.stderr).not.to.match(/may outlive this process/)
      // The logged pid is nats-server itself (setpriv exec'd it), serving the port.
      expect(processState(natsPid)).to.deep.equal({ comm: 'nats-server', running: true })
      expect(await portIsClosed(natsPort)).to.equal(false)
      expect(await server.stop('SIGKILL')).to.equal(null)
      await eventually(() => expect(processState(natsPid ?? 0).running, `nats-server ${String(natsPid)} still runs`).to.equal(false), 5000)
      // The main thread turns zombie before the other threads are gone, and the process's sockets
      // close with the last of them: the port may still answer for a moment.
      await eventually(async () => expect(await portIsClosed(natsPort)).to.equal(true), 5000)
    } finally {
      await server.stop('SIGKILL')
      if (natsPid !== undefined && processState(natsPid).comm === 'nats-server' && processState(natsPid).running) process.kill(natsPid, 'SIGKILL')
    }
  })

  it('serves HTTPS with --httpstls', async function () {
    const [port, httpPort] = [await freePort(), await freePort()]
    const server = runCli(['-t', 'cli-secret', 'server', '-p', String(port), '--host', '127.0.0.1', '--httpport', String(httpPort), '--httpstls', '--dynport', String(await freePort())])
    try {
      const [, fingerprint] = await server.waitFor(/fingerprint: ([0-9A-F:]{95})/)
      const res = await httpsGetPinned(httpPort, '/help', fingerprint, 'cli-secret')
      expect(res.status).to.equal(200)
      expect(JSON.parse(res.body).routes).to.be.an('array')
    } finally {
      await server.stop()
    }
  })

  it('refuses --natsport together with --natsurl, and --natsca without --natsurl', async function () {
    const both = await runCliToEnd(['-t', 'x', 'server', '--natsport', '4222', '--natsurl', 'nats://127.0.0.1:4222'])
    expect(both.code).to.equal(2)
    expect(both.stderr).to.match(/--natsport and --natsurl exclude each other/)
    const ca = await runCliToEnd(['-t', 'x', 'server', '--natsca', '/tmp/ca.pem'])
    expect(ca.code).to.equal(2)
    expect(ca.stderr).to.match(/--natsca goes with --natsurl/)
  })
})

/** A process's name and whether it runs (a zombie, dead but not yet reaped, does not). */
function processState (pid: number): { comm?: string, running: boolean } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const state = stat.slice(stat.lastIndexOf(')') + 2)[0]
    return { comm, running: state !== 'Z' && state !== 'X' }
  } catch {
    return { running: false }
  }
}
