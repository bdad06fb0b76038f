import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Teardown } from './app.js'

export interface TestCertificate {
  certFile: string
  keyFile: string
  /** The certificate (PEM), to trust it as a CA in a client. */
  cert: string
}

/** A self-signed certificate for localhost and 127.0.0.1 made by openssl, removed when the test ends. */
export async function selfSignedCertificate(t: Teardown): Promise<TestCertificate> {
  const dir = await mkdtemp(join(tmpdir(), 'mb-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', keyFile, '-out', certFile
  ])
  return { certFile, keyFile, cert: await readFile(certFile, 'utf8') }
}
