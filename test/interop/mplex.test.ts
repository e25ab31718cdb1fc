import { sharedScenarios } from './scenarios.js'

describe('interop: our mplex with @libp2p/mplex 12', function () {
  this.timeout(60_000)
  sharedScenarios('mplex')
})
