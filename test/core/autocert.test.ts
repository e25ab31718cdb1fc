import { expect } from 'chai'
import { chmod, mkdtemp, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { selfSignedCertificate } from '../../server/certificate.js'
import { runCli, runCliToEnd } from '../fixtures/cli.js'
import { freePort, nothingListens } from '../fixtures/net.js'
import { startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import type { TunnelServer, TunnelServerOptions } from '../../index.js'

/** Starts a server with `opts`, or returns why it refused to. */
async function tryStart (opts: Partial<TunnelServerOptions>): Promise<TunnelServer | Error> {
  return await startServer(opts).catch((e: Error) => e)
}

/** Whether a client pinned to `fingerprint` can register with `server`. */
async function pinnedClientRegisters (server: TunnelServer, fingerprint: string): Promise<boolean> {
  const client = startClient(server, tunnelData(1, { serviceName: 'pinned' }), { fingerprint })
  try {
    return await client.ready().then(() => true, () => false)
  } finally {
    await client.close()
  }
}

describe('certificate: --autocertdir keeps the self-signed certificate across restarts', function () {
  this.timeout(30_000)
  let base: string
  let dir: string

  beforeEach(async function () {
    base = await mkdtemp(join(tmpdir(), 'reverselb-autocert-'))
    dir = join(base, 'not', 'there', 'yet')
  })
  afterEach(async function () {
    await rm(base, { recursive: true, force: true })
  })

  it('generates it on the first start (dir 0700, key 0600) and presents the same one on the next', async function () {
    const first = await startServer({ autoCertDir: dir })
    const fingerprint = first.fingerprint
    expect(await pinnedClientRegisters(first, fingerprint)).to.equal(true)
    await first.close()

    expect((await stat(dir)).mode & 0o777).to.equal(0o700)
    expect((await stat(join(dir, 'key.pem'))).mode & 0o777).to.equal(0o600)
    expect((await readdir(dir)).sort()).to.deep.equal(['cert.pem', 'key.pem'])
    const certBefore = await readFile(join(dir, 'cert.pem'), 'utf8')

    const second = await startServer({ autoCertDir: dir })
    try {
      expect(second.fingerprint).to.equal(fingerprint)
      // What the client sees on the wire is the stored certificate: a client pinned to the first start's fingerprint gets in.
      expect(await pinnedClientRegisters(second, fingerprint)).to.equal(true)
      expect(await readFile(join(dir, 'cert.pem'), 'utf8')).to.equal(certBefore)
    } finally {
      await second.close()
    }

    // Without the directory every start has a new certificate, which that client refuses.
    const fresh = await startServer()
    try {
      expect(fresh.fingerprint).not.to.equal(fingerprint)
      expect(await pinnedClientRegisters(fresh, fingerprint)).to.equal(false)
    } finally {
      await fresh.close()
    }
  })

  it('refuses a corrupt, half-present or mismatched pair, or one for another name, naming the file; never replaces it', async function () {
    const first = await startServer({ autoCertDir: dir })
    await first.close()
    const certFile = join(dir, 'cert.pem')
    const keyFile = join(dir, 'key.pem')
    const goodCert = await readFile(certFile, 'utf8')
    const goodKey = await readFile(keyFile, 'utf8')
    const port = await freePort()
    const refusal = async (): Promise<string> => {
      const r = await tryStart({ port, autoCertDir: dir })
      if (!(r instanceof Error)) { await r.close(); return 'started' }
      expect(await nothingListens(port)).to.equal(true)
      return r.message
    }

    await writeFile(certFile, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n')
    expect(await refusal()).to.match(new RegExp(`^${certFile} is not a PEM certificate .*remove both cert\\.pem and key\\.pem`))
    expect(await readFile(certFile, 'utf8')).to.contain('not base64 at all')

    await writeFile(certFile, goodCert)
    await writeFile(keyFile, 'garbage')
    expect(await refusal()).to.match(new RegExp(`^${keyFile} is not a PEM private key`))

    const other = await selfSignedCertificate('localhost')
    await writeFile(keyFile, other.key)
    expect(await refusal()).to.match(new RegExp(`^${keyFile} is not the key of ${certFile} \\(they do not match\\)`))
    expect(await readFile(keyFile, 'utf8')).to.equal(other.key)

    await writeFile(keyFile, goodKey)
    await unlink(certFile)
    expect(await refusal()).to.match(/holds key\.pem but no cert\.pem: restore it, or remove both/)
    expect(await readdir(dir)).to.deep.equal(['key.pem'])

    await writeFile(certFile, goodCert)
    const renamed = await tryStart({ port, autoCertDir: dir, autoCertSubjectName: 'tunnel.example.test' })
    expect(renamed).to.be.instanceOf(Error)
    expect((renamed as Error).message).to.match(/cert\.pem was made for CN=localhost, not for the subject name "tunnel\.example\.test"/)

    // The intact pair works again, with its old fingerprint.
    const again = await startServer({ autoCertDir: dir })
    await again.close()
    expect(again.fingerprint).to.equal(first.fingerprint)
  })

  it('CLI: $AUTO_CERT_DIR gives the same fingerprint on the next start; warns about a key others can read; not with --tls-cert', async function () {
    const fingerprintOfRun = async (): Promise<{ fingerprint: string, log: string }> => {
      const [port, dynPort] = [await freePort(), await freePort()]
      const server = runCli(['-t', 'cli-secret', 'server', '-p', String(port), '--host', '127.0.0.1', '--dynport', String(dynPort)], { AUTO_CERT_DIR: dir })
      let fingerprint: string
      try {
        [, fingerprint] = await server.waitFor(/fingerprint: ([0-9A-F:]{95})/)
      } catch (err) {
        await server.stop()
        throw err
      }
      // Stopped right after the fingerprint line, while the server may still be opening ports: the
      // signal handler is in place before listen(), so this is a clean shutdown too.
      expect(await server.stop()).to.equal(0)
      return { fingerprint, log: server.stderr }
    }
    const one = await fingerprintOfRun()
    expect(one.log).to.contain(`generated a self-signed certificate for "localhost" and stored it in ${dir}`)
    await chmod(join(dir, 'key.pem'), 0o644)
    const two = await fingerprintOfRun()
    expect(two.fingerprint).to.equal(one.fingerprint)
    expect(two.log).to.contain(`using the self-signed certificate stored in ${dir}`)
    expect(two.log).to.match(/WARN.*key\.pem is readable by other users/)
    expect(one.log).not.to.match(/WARN/)

    const both = await runCliToEnd(['-t', 'x', 'server', '--autocertdir', dir, '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')])
    expect(both.code).to.equal(2)
    expect(both.stderr).to.match(/--autocertdir .* does not go with --tls-cert/)
  })
})
