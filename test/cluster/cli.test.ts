import { expect } from 'chai'
import { runCliToEnd } from '../fixtures/cli.js'

describe('cluster: server CLI options', function () {
  this.timeout(30_000)

  it('refuses --cluster without --natsurl or a long enough secret, and the cluster options without --cluster', async function () {
    const secret = { CLUSTER_SECRET: 'a-secret-of-enough-length' }
    const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
      [['--cluster', 'c1'], secret, /--cluster needs --natsurl/],
      [['--cluster', 'c1', '--natsurl', 'nats://127.0.0.1:1'], {}, /--cluster needs --clustersecret/],
      [['--cluster', 'c1', '--natsurl', 'nats://127.0.0.1:1'], { CLUSTER_SECRET: 'short' }, /at least 16 characters/],
      [['--cluster', 'bad name', '--natsurl', 'nats://127.0.0.1:1'], secret, /--cluster must be/],
      [['--cluster', 'c1', '--natsurl', 'nats://127.0.0.1:1', '--advertise', 'host:notaport'], secret, /--advertise/],
      [['--advertise', 'host:9999'], {}, /go with --cluster/],
      [['--cluster', 'c1', '--natsurl', 'nats://127.0.0.1:1', '--natsport', '4222'], secret, /exclude each other/]
    ]
    for (const [args, env, message] of cases) {
      const r = await runCliToEnd(['-t', 'tok', 'server', ...args], env)
      expect(r.code, args.join(' ')).to.equal(2)
      expect(r.stderr, args.join(' ')).to.match(message)
      expect(r.stderr).not.to.contain(env.CLUSTER_SECRET ?? 'a-secret-of-enough-length')
    }
  })

  it('fails at start with a clear message when the cluster\'s NATS cannot be reached', async function () {
    const r = await runCliToEnd(['-t', 'tok', 'server', '-p', '0', '--host', '127.0.0.1', '--cluster', 'c1', '--natsurl', 'nats://127.0.0.1:1'], { CLUSTER_SECRET: 'a-secret-of-enough-length' })
    expect(r.code).to.not.equal(0)
    expect(r.stderr).to.match(/cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/)
    expect(r.stderr).not.to.contain('a-secret-of-enough-length')
  })
})
