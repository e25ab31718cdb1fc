import { ReverselbError } from '../../protocol/index.js'
/**
 * Negotiate (SPNEGO over Kerberos) with the ticket in the user's cache (kinit). The native
 * `kerberos` package is an optional dependency: it is imported only here, only when a proxy asks
 * for Negotiate, so that installs without it (no compiler, no libkrb5) still run everything else.
 */

/** Kerberos cannot produce a token for this proxy: no module, no ticket, unknown SPN... */
export class NegotiateUnavailableError extends ReverselbError {
  override name = 'NegotiateUnavailableError'
  constructor (message: string, options?: ErrorOptions) { super('ERR_REVERSELB_NEGOTIATE_UNAVAILABLE', message, options) }
}

// The part of the `kerberos` package used here, declared locally so the build needs no types
// from a package that may be absent.
interface KerberosClient { step: (challenge: string) => Promise<string> }
interface KerberosModule {
  GSS_MECH_OID_SPNEGO: number
  initializeClient: (service: string, options: { mechOID: number }) => Promise<KerberosClient>
}
const OPTIONAL_MODULE = 'kerberos'
let loaded: Promise<KerberosModule> | undefined

async function kerberos (): Promise<KerberosModule> {
  loaded ??= (import(OPTIONAL_MODULE) as Promise<KerberosModule & { default?: KerberosModule }>).then(m => m.default ?? m)
  try {
    return await loaded
  } catch (err) {
    loaded = undefined
    throw new NegotiateUnavailableError('Negotiate (Kerberos) proxy authentication needs the optional "kerberos" package, which is not ' +
      `installed or did not build (${(err as Error).message.split('\n')[0]}): apt-get install libkrb5-dev build-essential, then npm install kerberos`)
  }
}

/** GSSAPI's messages, turned into what the user should do about them. */
function explain (err: Error, service: string): string {
  const m = err.message
  const spn = service.replace('@', '/')
  if (/No Kerberos credentials|credentials cache|No credentials were supplied|not found.*cache|ccache/i.test(m)) {
    return `no Kerberos ticket for ${spn}: run kinit (or set KRB5CCNAME to your ticket cache)`
  }
  if (/expired/i.test(m)) return `the Kerberos ticket has expired: run kinit again (${m})`
  if (/Server not found in Kerberos database|not found in Kerberos database/i.test(m)) {
    return `the KDC does not know the service principal ${spn}: give the proxy by the host name its principal uses (its canonical name, not an alias or IP address)`
  }
  if (/Cannot contact any KDC|Cannot find KDC|unable to reach/i.test(m)) return `no Kerberos KDC reachable for ${spn}: ${m}`
  return `Kerberos failed for ${spn}: ${m}`
}

/** One SPNEGO context with the proxy `HTTP@host`: the first token, then any continuation. */
export class NegotiateContext {
  private constructor (private readonly client: KerberosClient, private readonly service: string) {}

  static async start (proxyHost: string): Promise<{ context: NegotiateContext, token: string }> {
    const krb = await kerberos()
    const service = `HTTP@${proxyHost}`
    try {
      const client = await krb.initializeClient(service, { mechOID: krb.GSS_MECH_OID_SPNEGO })
      const context = new NegotiateContext(client, service)
      return { context, token: await client.step('') }
    } catch (err) {
      throw new NegotiateUnavailableError(explain(err as Error, service))
    }
  }

  /** Answers a continuation token from a 407, or checks the proxy's mutual-auth token on 200. */
  async step (serverToken: string): Promise<string> {
    try {
      return await this.client.step(serverToken)
    } catch (err) {
      throw new NegotiateUnavailableError(`the proxy's Negotiate answer did not verify: ${explain(err as Error, this.service)}`)
    }
  }
}
