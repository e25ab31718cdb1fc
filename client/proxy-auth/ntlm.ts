import { createRequire } from 'node:module'
import { hostname } from 'node:os'
import type { Credentials } from './credentials.js'

// @ewsjs/ntlm-client is CommonJS without types: these are the three calls we use.
interface Type2Message {
  version: number
  targetName: string
  targetInfo?: { parsed?: Record<string, string>, buffer?: Buffer }
}
interface NtlmClient {
  createType1Message: (workstation?: string, target?: string) => string
  decodeType2Message: (header: string) => Type2Message
  createType3Message: (type2: Type2Message, username: string, password: string, workstation?: string, target?: string) => string
}
const ntlm = createRequire(import.meta.url)('@ewsjs/ntlm-client') as NtlmClient

/** `DOMAIN\user` splits into domain and user; `user@domain.example` (a UPN) stays whole. */
export function splitDomain (user: string): { domain?: string, user: string } {
  const slash = user.indexOf('\\')
  return slash < 0 ? { user } : { domain: user.slice(0, slash), user: user.slice(slash + 1) }
}

/** The workstation name NTLM sends: the short host name, as Windows does. */
const workstation = (): string => hostname().split('.')[0].toUpperCase()

const NEGOTIATE_TARGET_INFO = 0x800000

/**
 * The challenge with out-of-range name or target-info fields emptied, which the library rejects
 * as a whole: some servers send a short legacy Type 2 whose target-name offset is garbage
 * (squid's ntlm_fake_auth does). The challenge itself, all NTLMv2 needs, sits at a fixed offset.
 */
function tolerant (challenge: string): string {
  const buf = Buffer.from(challenge.replace(/^NTLM\s+/i, ''), 'base64')
  if (buf.length < 32) return challenge
  const inRange = (at: number): boolean => buf.length >= at + 8 && buf.readUInt32LE(at + 4) + buf.readUInt16LE(at) <= buf.length
  if (!inRange(12)) buf.fill(0, 12, 20)
  if ((buf.readUInt32LE(20) & NEGOTIATE_TARGET_INFO) !== 0 && !inRange(40)) buf.writeUInt32LE(buf.readUInt32LE(20) & ~NEGOTIATE_TARGET_INFO >>> 0, 20)
  return buf.toString('base64')
}

/** The Type 1 (negotiate) message, as a `Proxy-Authorization` value. */
export function ntlmNegotiate (creds: Credentials): string {
  return ntlm.createType1Message(workstation(), splitDomain(creds.user).domain ?? '')
}

/**
 * The Type 3 (authenticate) message answering the proxy's Type 2 challenge (the base64 after
 * `NTLM `). Always NTLMv2: the library would fall back to NTLMv1 (DES of the bare NT hash, long
 * broken) when the challenge lacks the extended-security flag, and cannot build NTLMv2 without a
 * target-info block; an empty block is valid NTLMv2 and what Samba's own client sends then.
 */
export function ntlmAuthenticate (challenge: string, creds: Credentials): string {
  let type2: Type2Message
  try {
    type2 = ntlm.decodeType2Message(tolerant(challenge))
  } catch (err) {
    throw new Error(`the proxy's NTLM challenge is malformed (${(err as Error).message.replace(/:.*/, '')})`)
  }
  type2.version = 2
  if (type2.targetInfo?.buffer === undefined) type2.targetInfo = { parsed: {}, buffer: Buffer.alloc(0) }
  const { domain, user } = splitDomain(creds.user)
  return ntlm.createType3Message(type2, user, creds.password, workstation(), domain)
}
