import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Teardown } from './app.js'
import { freePort } from './ports.js'
import type { TestCertificate } from './tls.js'

export interface Nginx {
  url: string
  port: number
  /** With `tls`: the HTTPS listener (HTTP/2 by ALPN, HTTP/1.1 beside it). */
  tlsUrl?: string
  /** The configuration it runs with. */
  config: string
  stop(): Promise<void>
}

export interface NginxOptions {
  /** Also listen with TLS and HTTP/2 (the browsers' side of deploy/nginx.conf) on a port of its own. */
  tls?: TestCertificate
}

/**
 * The load balancer settings that matter for a gateway with SSE (the same as deploy/nginx.conf):
 * no response buffering (events reach the browser at once), HTTP/1.1 with upstream keep-alive,
 * a read timeout far above the heartbeat interval, and a retry on the next replica when one is
 * unreachable (a killed replica costs a reconnect, not an error page), and X-Forwarded-For set to
 * the client's address, not appended to (the gateway's per-IP limit must not take a client's word).
 * Browsers may come over TLS with HTTP/2 (one connection for all of a page's streams); the
 * replicas stay on HTTP/1.1.
 */
export function nginxConfig(options: { dir: string; port: number; upstreams: string[]; root: boolean; tls?: { port: number; cert: TestCertificate } }): string {
  const { dir, port, upstreams, tls } = options
  const location = `
    client_max_body_size 1m;

    location / {
      proxy_pass http://gateway;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
      proxy_cache off;
      proxy_connect_timeout 2s;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      proxy_next_upstream error timeout;
    }`
  const tlsServer = tls
    ? `
  server {
    listen 127.0.0.1:${tls.port} ssl http2;
    ssl_certificate ${tls.cert.certFile};
    ssl_certificate_key ${tls.cert.keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
${location}
  }
`
    : ''
  return `${options.root ? 'user root;\n' : ''}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;

  upstream gateway {
${upstreams.map((u) => `    server ${u} max_fails=1 fail_timeout=5s;`).join('\n')}
    keepalive 32;
  }

  server {
    listen 127.0.0.1:${port};
${location}
  }
${tlsServer}}
`
}

/**
 * A real nginx (`nginx -c <conf> -g 'daemon off;'`) on a free loopback port in front of the
 * given `host:port` upstreams (and with `tls`, on a second port with TLS and HTTP/2); every path
 * it writes is in a temp dir. Stopped when the test ends.
 */
export async function startNginx(t: Teardown, upstreams: string[], options: NginxOptions = {}): Promise<Nginx> {
  const dir = await mkdtemp(join(tmpdir(), 'mb-nginx-'))
  const port = await freePort()
  const tls = options.tls ? { port: await freePort(), cert: options.tls } : undefined
  const config = nginxConfig({ dir, port, upstreams, root: process.getuid?.() === 0, tls })
  const confPath = join(dir, 'nginx.conf')
  await writeFile(confPath, config)
  const child = spawn('nginx', ['-p', `${dir}/`, '-e', `${dir}/error.log`, '-c', confPath, '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  child.once('error', (err) => (stderr += err.message))
  const alive = () => child.exitCode === null && child.signalCode === null
  const onExit = () => child.kill('SIGKILL')
  process.once('exit', onExit)

  const stop = async () => {
    process.off('exit', onExit)
    if (alive()) {
      child.kill('SIGTERM') // fast shutdown: open SSE streams must not hold it
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
  }
  t.teardown(stop)

  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 10_000
  for (;;) {
    if (!alive()) {
      const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
      throw new Error(`nginx exited: ${stderr}${log}`)
    }
    // Any answer means nginx is listening (the replicas may still be starting: 502).
    if (await fetch(`${url}/healthz`).then(() => true, () => false)) break
    if (Date.now() > deadline) throw new Error(`nginx not listening within 10 s: ${stderr}`)
    await sleep(50)
  }
  return { url, port, tlsUrl: tls && `https://127.0.0.1:${tls.port}`, config, stop }
}
