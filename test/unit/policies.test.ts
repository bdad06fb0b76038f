import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError } from '../../src/config.js'
import { DEFAULT_POLICY, loadPolicies, parsePolicies, reloadPolicies, type Policies } from '../../src/limits/policies.js'
import { logCapture } from '../helpers/app.js'
import { pino } from 'pino'

t.test('no BUCKETS_FILE: the seed policy for every action', async (t) => {
  const p = loadPolicies(undefined)
  for (const action of ['rest', 'read', 'forward', 'delivery'] as const) t.same(p[action], DEFAULT_POLICY)
  t.same(DEFAULT_POLICY, { bucket_name: 'moltbook-agent-bucket', refill_rate: 20, capacity: 40, key_selector: 'jwt.claims.agent_id' })
})

t.test('a file sets the actions it lists; the others keep the default', async (t) => {
  const p = parsePolicies([{ action: 'read', bucket_name: 'reads', refill_rate: 0.5, capacity: 3, key_selector: 'ip' }])
  t.same(p.read, { bucket_name: 'reads', refill_rate: 0.5, capacity: 3, key_selector: 'ip' })
  t.same(p.rest, DEFAULT_POLICY)
})

t.test('the shipped example file is valid', async (t) => {
  const p = loadPolicies(join(import.meta.dirname, '../../buckets.example.json'))
  t.equal(p.delivery.bucket_name, 'moltbook-agent-delivery')
})

const bad: Array<[string, unknown, RegExp]> = [
  ['not an array', { action: 'rest' }, /BUCKETS_FILE.*array/],
  ['unknown action', [{ action: 'write', bucket_name: 'b', refill_rate: 1, capacity: 1, key_selector: 'ip' }], /BUCKETS_FILE at \/0\/action must be one of rest, read, forward, delivery/],
  ['zero refill', [{ action: 'rest', bucket_name: 'b', refill_rate: 0, capacity: 1, key_selector: 'ip' }], /BUCKETS_FILE at \/0\/refill_rate/],
  ['negative capacity', [{ action: 'rest', bucket_name: 'b', refill_rate: 1, capacity: -1, key_selector: 'ip' }], /\/0\/capacity/],
  ['bad selector', [{ action: 'rest', bucket_name: 'b', refill_rate: 1, capacity: 1, key_selector: 'header.x' }], /\/0\/key_selector/],
  ['missing field', [{ action: 'rest', refill_rate: 1, capacity: 1, key_selector: 'ip' }], /BUCKETS_FILE/],
  ['duplicate action', [
    { action: 'rest', bucket_name: 'a', refill_rate: 1, capacity: 1, key_selector: 'ip' },
    { action: 'rest', bucket_name: 'b', refill_rate: 1, capacity: 1, key_selector: 'ip' }
  ], /BUCKETS_FILE lists action "rest" twice/],
  ['unknown mode', [{ action: 'rest', bucket_name: 'b', refill_rate: 1, capacity: 1, key_selector: 'ip', mode: 'dry-run' }], /\/0\/mode must be one of enforce, shadow/]
]
for (const [name, data, message] of bad) {
  t.test(`refused: ${name}`, async (t) => {
    t.throws(() => parsePolicies(data), message)
    t.throws(() => parsePolicies(data), ConfigError)
  })
}

t.test('a file that is missing or not JSON is a ConfigError naming BUCKETS_FILE', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mb-policies-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'b.json')
  await writeFile(file, '{ nope')
  t.throws(() => loadPolicies(file), /BUCKETS_FILE .*b\.json cannot be read as JSON/)
  t.throws(() => loadPolicies(join(dir, 'missing.json')), /BUCKETS_FILE/)
})

t.test('a policy may be in shadow mode', async (t) => {
  const p = parsePolicies([{ action: 'rest', bucket_name: 'try', refill_rate: 1, capacity: 2, key_selector: 'ip', mode: 'shadow' }])
  t.equal(p.rest.mode, 'shadow')
  t.equal(p.read.mode, undefined, 'the others enforce')
})

t.test('reloadPolicies (SIGHUP): applies a valid file, keeps the old policies on a bad one and logs why', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mb-policies-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'b.json')
  const logs = logCapture()
  const log = pino({ level: 'info' }, logs.stream)
  const applied: Policies[] = []
  await writeFile(file, JSON.stringify([{ action: 'rest', bucket_name: 'new', refill_rate: 1, capacity: 7, key_selector: 'ip' }]))
  reloadPolicies(file, (p) => applied.push(p), log)
  t.equal(applied.length, 1)
  t.equal(applied[0].rest.capacity, 7)
  await writeFile(file, JSON.stringify([{ action: 'rest', bucket_name: 'new', refill_rate: 0, capacity: 7, key_selector: 'ip' }]))
  reloadPolicies(file, (p) => applied.push(p), log)
  t.equal(applied.length, 1, 'a file that does not validate is not applied')
  t.match(logs.lines.at(-1), /refill_rate must be > 0.*BUCKETS_FILE reload refused/)
  reloadPolicies(undefined, (p) => applied.push(p), log)
  t.equal(applied.length, 1, 'nothing to reload without BUCKETS_FILE')
})
