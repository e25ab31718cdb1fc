import { InvalidOptionError } from '../protocol/index.js'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { generate } from 'selfsigned'

export interface ServerCertificate {
  cert: string
  key: string
  /** SHA-256 fingerprint, colon-separated upper-case hex (as `openssl x509 -fingerprint -sha256`). */
  fingerprint: string
}

export function fingerprintOf (certPem: string): string {
  return new X509Certificate(certPem).fingerprint256
}

/** A fresh self-signed certificate for `subjectName` (CN and SAN), valid for two years. */
export async function selfSignedCertificate (subjectName: string): Promise<ServerCertificate> {
  const names = new Set([subjectName])
  if (subjectName === 'localhost') { names.add('127.0.0.1'); names.add('::1') }
  const altNames = [...names].map(n => isIP(n) !== 0 ? { type: 7 as const, ip: n } : { type: 2 as const, value: n })
  const notAfterDate = new Date()
  notAfterDate.setFullYear(notAfterDate.getFullYear() + 2)
  const pems = await generate([{ name: 'commonName', value: subjectName }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames }
    ]
  })
  return { cert: pems.cert, key: pems.private, fingerprint: fingerprintOf(pems.cert) }
}

/** An operator's own certificate and key (PEM files). */
export async function loadCertificate (certFile: string, keyFile: string): Promise<ServerCertificate> {
  const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')])
  return { cert, key, fingerprint: fingerprintOf(cert) }
}

export interface StoredCertificate extends ServerCertificate {
  /** True when it was generated now (and written), false when it was read from the directory. */
  created: boolean
  certFile: string
  keyFile: string
  /** Why the stored files deserve the operator's attention (key readable by others, expiry). */
  warnings: string[]
}

const readIfThere = async (file: string): Promise<string | undefined> =>
  await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err })

/**
 * The self-signed certificate kept in `dir` (cert.pem, key.pem): generated and written on the
 * first start (directory 0700 when created, key 0600, each file written to a temporary name and
 * renamed), read back on every later start, so the fingerprint stays the same across restarts.
 * A half-written, unparsable or mismatched pair, or one made for another subject name, is an
 * error that says which file and what to do; it is never silently replaced.
 */
export async function storedSelfSignedCertificate (dir: string, subjectName: string): Promise<StoredCertificate> {
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  const where = `certificate directory ${dir}`
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const [cert, key] = await Promise.all([readIfThere(certFile), readIfThere(keyFile)])
  if (cert === undefined && key === undefined) {
    const fresh = await selfSignedCertificate(subjectName)
    const suffix = '.tmp'
    // A crash may have left temporary files: 'wx' below must create them anew (with its mode).
    await Promise.all([rm(keyFile + suffix, { force: true }), rm(certFile + suffix, { force: true })])
    await writeFile(keyFile + suffix, fresh.key, { mode: 0o600, flag: 'wx' })
    await writeFile(certFile + suffix, fresh.cert, { mode: 0o644, flag: 'wx' })
    await rename(keyFile + suffix, keyFile)
    await rename(certFile + suffix, certFile)
    return { ...fresh, created: true, certFile, keyFile, warnings: [] }
  }
  const fix = 'remove both cert.pem and key.pem to generate a new certificate (its fingerprint changes: pinned clients need the new one)'
  if (cert === undefined || key === undefined) {
    throw new InvalidOptionError(`${where} holds ${cert === undefined ? 'key.pem but no cert.pem' : 'cert.pem but no key.pem'}: restore it, or ${fix}`)
  }
  let x509: X509Certificate
  try { x509 = new X509Certificate(cert) } catch (err) { throw new InvalidOptionError(`${certFile} is not a PEM certificate (${(err as Error).message}): ${fix}`) }
  let privateKey: ReturnType<typeof createPrivateKey>
  try { privateKey = createPrivateKey(key) } catch (err) { throw new InvalidOptionError(`${keyFile} is not a PEM private key (${(err as Error).message}): ${fix}`) }
  if (!x509.checkPrivateKey(privateKey)) throw new InvalidOptionError(`${keyFile} is not the key of ${certFile} (they do not match): ${fix}`)
  const covers = isIP(subjectName) !== 0 ? x509.checkIP(subjectName) !== undefined : x509.checkHost(subjectName) !== undefined
  if (!covers) {
    throw new InvalidOptionError(`${certFile} was made for ${x509.subject.replace(/\n/g, ', ')}, not for the subject name "${subjectName}": ` +
      `give the subject name it was made for, or ${fix}`)
  }
  const warnings: string[] = []
  const mode = (await stat(keyFile)).mode & 0o777
  if ((mode & 0o077) !== 0) {
    warnings.push(`${keyFile} is readable by other users (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 it ` +
      '(on a share whose modes are fixed by the mount, such as Azure Files, keep the share itself private)')
  }
  const daysLeft = Math.floor((Date.parse(x509.validTo) - Date.now()) / 86_400_000)
  if (daysLeft < 30) {
    warnings.push(daysLeft < 0
      ? `${certFile} expired on ${x509.validTo} (clients that pin its fingerprint still accept it; those that check it with --ca do not): ${fix}`
      : `${certFile} expires in ${daysLeft} days (${x509.validTo}); then ${fix}`)
  }
  return { cert, key, fingerprint: x509.fingerprint256, created: false, certFile, keyFile, warnings }
}
