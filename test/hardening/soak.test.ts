import { expect } from 'chai'
import { formatReport, runSoak, verdict } from '../../soak/soak.js'

/** The CI-sized soak: the same module as `npm run soak`, shorter, with a restart every 20 s. */
const SECONDS = Number(process.env.SOAK_SECONDS ?? 60)

describe('soak (short)', function () {
  this.timeout((SECONDS + 90) * 1000)

  it(`${SECONDS} s of mixed bulk and short transfers through two CLI clients, one restarted every 20 s: nothing corrupted, no unexpected failure, no leak`, async function () {
    const lines: string[] = []
    const report = await runSoak({ seconds: SECONDS, restartEverySeconds: 20, log: (l) => lines.push(l) })
    // The figures go to the test output, for the record.
    console.log(lines.map(l => `      ${l}`).join('\n'))
    console.log(formatReport(report).split('\n').map(l => `      ${l}`).join('\n'))
    expect(report.restarts).to.be.at.least(Math.floor((SECONDS - 2) / 20))
    expect(report.transfers.bulk).to.be.greaterThan(0)
    expect(report.transfers.short).to.be.greaterThan(0)
    expect(verdict(report)).to.deep.equal([])
  })
})
