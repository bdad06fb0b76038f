import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { parse } from 'yaml'
import { ROOT } from '../helpers/processes.js'

// docker-compose.yml and the Dockerfile describe the replicated system (issue 5); with no Docker
// here, this reads them as an operator would and checks that the pieces fit together.

interface Service {
  build?: unknown
  image?: string
  profiles?: string[]
  command?: string[]
  environment?: Record<string, string>
  ports?: string[]
  volumes?: string[]
  healthcheck?: { test: string[] | string }
  networks?: Record<string, { ipv4_address?: string }>
}

const read = (file: string) => readFileSync(join(ROOT, file), 'utf8')
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service> }
const demo = parse(read('docker-compose.demo.yml')) as { services: Record<string, Service> }
const services = compose.services
const gateways = Object.entries(services).filter(([, s]) => s.environment?.REDIS_URL !== undefined)
const healthTest = (s: Service) => [s.healthcheck?.test ?? []].flat().join(' ')
/** `${VAR:-default}` as compose resolves it with nothing set. */
const resolved = (value: string | undefined) => value?.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1')

t.test('services: redis, three gateway replicas, nginx, moltbook, openclaw, each with a healthcheck', async (t) => {
  for (const name of ['redis', 'nginx', 'moltbook', 'openclaw']) t.ok(services[name], `${name} service`)
  t.equal(gateways.length, 3, 'three gateway replicas')
  for (const [name, s] of gateways) {
    t.ok(s.build, `${name} is built from the Dockerfile`)
    t.match(healthTest(s), /\/healthz/, `${name} healthcheck on /healthz`)
    t.notOk(s.ports, `${name} is reached through nginx only`)
  }
  for (const name of ['redis', 'nginx', 'moltbook', 'openclaw']) t.ok(services[name].healthcheck, `${name} healthcheck`)
  t.ok(services.nginx.ports?.some((p) => /:80$/.test(p)), 'nginx publishes its port 80')
})

t.test('the replicas point at the shared Redis and the simulators', async (t) => {
  const moltbookPort = services.moltbook.environment?.PORT
  const openclawPort = services.openclaw.environment?.PORT
  for (const [name, s] of gateways) {
    const env = s.environment ?? {}
    t.equal(env.REDIS_URL, 'redis://redis:6379', `${name} REDIS_URL`)
    t.equal(new URL(env.MOLTBOOK_URL).host, `moltbook:${moltbookPort}`, `${name} MOLTBOOK_URL`)
    t.equal(new URL(env.OPENCLAW_URL).host, `openclaw:${openclawPort}`, `${name} OPENCLAW_URL`)
    t.equal(resolved(env.OPENCLAW_API_KEY), resolved(services.openclaw.environment?.OPENCLAW_API_KEY), `${name} shares the OpenClaw key`)
    t.equal(env.TRUST_PROXY, services.nginx.networks?.default?.ipv4_address, `${name} trusts exactly nginx for client addresses`)
  }
  for (const name of ['moltbook', 'openclaw']) {
    const entry = services[name].command?.find((part) => part.endsWith('.js'))
    t.ok(entry && existsSync(join(ROOT, entry.replace(/^dist\//, '').replace(/\.js$/, '.ts'))), `${name} runs a simulator that exists`)
  }
})

t.test('profile sentinel: a primary, a replica, three Sentinels, and deploy/sentinel.env pointing the replicas at them', async (t) => {
  const env = Object.fromEntries(
    read('deploy/sentinel.env')
      .split('\n')
      .filter((line) => /^[A-Z_]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)])
  )
  t.equal(env.COMPOSE_PROFILES, 'sentinel', 'the env file turns the profile on')
  const inProfile = Object.entries(services).filter(([, s]) => s.profiles?.includes('sentinel'))
  const names = inProfile.map(([name]) => name)
  const sentinels = inProfile.filter(([, s]) => s.command?.join(' ').includes('--sentinel'))
  t.equal(sentinels.length, 3, 'three Sentinels')
  t.same(
    env.REDIS_SENTINELS.split(',').sort(),
    sentinels.map(([name]) => `${name}:26379`).sort(),
    'REDIS_SENTINELS lists every Sentinel on its port'
  )
  for (const [name, s] of sentinels) {
    const monitor = /sentinel monitor (\S+) (\S+) 6379 (\d)/.exec(s.command?.join(' ') ?? '')
    t.equal(monitor?.[1], env.REDIS_SENTINEL_NAME, `${name} monitors the primary REDIS_SENTINEL_NAME names`)
    t.ok(monitor && names.includes(monitor[2]), `${name} monitors a primary of the profile`)
    t.equal(monitor?.[3], '2', `${name}: quorum 2 of 3`)
  }
  const replicas = inProfile.filter(([, s]) => s.command?.includes('--replicaof'))
  t.equal(replicas.length, 1, 'one replica')
  const primary = replicas[0][1].command?.[replicas[0][1].command.indexOf('--replicaof') + 1]
  t.ok(primary && services[primary]?.profiles?.includes('sentinel'), 'it replicates the primary of the profile')
  t.ok(Number(env.REDIS_WAIT_REPLICAS) <= replicas.length, 'REDIS_WAIT_REPLICAS asks no more replicas than there are')
  for (const [name, s] of gateways) {
    for (const variable of ['REDIS_SENTINELS', 'REDIS_SENTINEL_NAME', 'REDIS_WAIT_REPLICAS']) {
      t.match(s.environment?.[variable], new RegExp(`^\\$\\{${variable}:-`), `${name} takes ${variable} from the env file`)
    }
  }
})

t.test('the stack is bound to localhost, has no demo and no committed secret unless asked for', async (t) => {
  const published = Object.entries(services).flatMap(([name, s]) => (s.ports ?? []).map((port) => [name, port]))
  t.ok(published.length > 0, 'some ports are published')
  for (const [name, port] of published) t.match(port, /^127\.0\.0\.1:/, `${name} publishes ${port} on 127.0.0.1 only`)
  for (const [name, s] of gateways) {
    t.notOk(s.environment?.DEMO, `${name}: DEMO is off`)
    t.notOk(s.environment?.JWT_SECRET, `${name}: no JWT_SECRET in the file`)
    t.match(s.command?.join(' '), /JWT_SECRET=.*\/run\/moltbridge\/jwt_secret/, `${name} reads the generated secret at start`)
    t.equal(demo.services[name]?.environment?.DEMO, 'true', `${name}: the demo override turns DEMO on`)
  }
  t.notMatch(read('docker-compose.yml'), /JWT_SECRET:\s*\$\{JWT_SECRET:-[^}]/, 'no default secret to fall back on')
  const init = services['jwt-secret']
  t.match(init?.command?.join('\n'), /randomBytes\(48\)/, 'the init service generates a secret when none is given')
  t.match(read('deploy/nginx.conf'), /proxy_set_header X-Forwarded-For \$remote_addr;/, 'nginx sets X-Forwarded-For, never appends')
})

t.test('nginx: the mounted config exists, balances over every replica, and is set up for SSE', async (t) => {
  const mount = services.nginx.volumes?.find((v) => v.includes('nginx.conf'))
  t.ok(mount, 'nginx mounts a config')
  const source = mount!.split(':')[0]
  t.ok(existsSync(join(ROOT, source)), `${source} exists`)
  const conf = read(source)
  for (const [name, s] of gateways) {
    t.match(conf, new RegExp(`server ${name}:${s.environment?.PORT ?? 3000}\\b`), `upstream has ${name}`)
  }
  t.match(conf, /proxy_buffering off;/, 'no response buffering')
  t.match(conf, /proxy_http_version 1\.1;/, 'HTTP/1.1 upstream')
  t.match(conf, /proxy_set_header Connection "";/, 'upstream keep-alive (no Connection: close)')
  t.match(conf, /keepalive \d+;/, 'idle upstream connections kept')
  const timeout = /proxy_read_timeout (\d+)(h|m|s)?;/.exec(conf)
  const seconds = timeout ? Number(timeout[1]) * ({ h: 3600, m: 60, s: 1 }[timeout[2] ?? 's'] ?? 1) : 0
  t.ok(seconds >= 300, `proxy_read_timeout ${seconds} s is far above the SSE heartbeat`)
})

t.test('nginx: TLS with HTTP/2 for browsers, on a certificate made at start, HTTP/1.1 to the replicas', async (t) => {
  const conf = read('deploy/nginx.conf')
  t.match(conf, /listen 443 ssl;/, 'a TLS listener')
  t.match(conf, /http2 on;/, 'HTTP/2 (nginx 1.25.1+ syntax; the image is 1.27)')
  t.match(services.nginx.image, /^nginx:1\.(2[5-9]|[3-9]\d)/, 'an nginx that knows `http2 on`')
  t.ok(services.nginx.ports?.some((p) => /:443$/.test(p)), 'nginx publishes its port 443')
  const certDir = services.nginx.volumes?.find((v) => v.split(':')[1] === '/etc/nginx/certs')?.split(':')[0]
  t.ok(certDir, 'the certificates are mounted at /etc/nginx/certs')
  for (const file of ['tls.crt', 'tls.key']) t.match(conf, new RegExp(`/etc/nginx/certs/${file};`), `nginx reads ${file} there`)
  const certs = services.certs as Service & { depends_on?: unknown }
  t.ok(certs?.volumes?.some((v) => v.startsWith(`${certDir}:`)), 'the certs service writes into the same volume')
  const script = [certs?.command ?? []].flat().join(' ')
  t.match(script, /test -s \/certs\/tls\.crt \|\|/, 'a certificate is made only when there is none (a real one stays)')
  t.match(script, /openssl req -x509 .*-keyout \/certs\/tls\.key -out \/certs\/tls\.crt/, 'self-signed, into the volume')
  t.match(script, /subjectAltName=DNS:localhost/, 'valid for localhost')
  const nginxDepends = (services.nginx as Service & { depends_on?: Record<string, { condition: string }> }).depends_on
  t.equal(nginxDepends?.certs?.condition, 'service_completed_successfully', 'nginx starts once the certificate exists')
})

t.test('Dockerfile: multi-stage node:20-slim, production dependencies only, non-root, healthcheck', async (t) => {
  const file = read('Dockerfile')
  const stages = file.match(/^FROM node:20-slim/gm) ?? []
  t.ok(stages.length >= 2, 'multi-stage on node:20-slim')
  t.match(file, /npm ci --omit=dev/, 'runtime has production dependencies only')
  t.match(file, /^USER (?!root)\S+/m, 'runs as a non-root user')
  t.match(file, /^HEALTHCHECK .*healthz/ms, 'healthcheck on /healthz')
  for (const [, from] of file.matchAll(/^COPY (?!--from)(\S+) /gm)) t.ok(existsSync(join(ROOT, from)), `COPY source ${from} exists`)
})

const exec = promisify(execFile)
/** `docker compose` (v2), or Debian's `docker-compose` 1.29: both validate the file without an engine. */
const composeCommand = await exec('docker', ['compose', 'version']).then(
  () => ['docker', 'compose'],
  () => exec('docker-compose', ['version']).then(() => ['docker-compose'], () => null)
)

t.test(
  'docker compose config accepts the file: as it is, with the demo override, and with deploy/sentinel.env',
  { skip: composeCommand ? false : 'neither docker compose nor docker-compose is installed here' },
  async (t) => {
    const [command, ...args] = composeCommand ?? []
    const file = ['-f', join(ROOT, 'docker-compose.yml')]
    await exec(command, [...args, ...file, 'config', '--quiet'], { cwd: ROOT })
    t.pass('docker compose config')
    await exec(command, [...args, ...file, '-f', join(ROOT, 'docker-compose.demo.yml'), 'config', '--quiet'], { cwd: ROOT })
    t.pass('docker compose config with the demo override')
    const { stdout } = await exec(command, [...args, '--env-file', join(ROOT, 'deploy/sentinel.env'), ...file, 'config'], { cwd: ROOT })
    t.match(stdout, /REDIS_SENTINELS: sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/, 'the env file reaches the gateways')
  }
)
