import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
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
