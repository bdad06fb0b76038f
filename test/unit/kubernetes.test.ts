import { execFile } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Deployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1'
import t from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { ConfigSchema, loadConfig } from '../../src/config.js'

// deploy/kubernetes (issue 14) read as `kubectl apply -k` would, with no cluster and no kubectl:
// the kustomizations are built here (only the features they use), every object is validated
// against the Kubernetes API schemas of kubernetes-models, and the facts a rollout depends on
// (probes, drain time, config wiring) are checked against the gateway's own config schema.

const DIR = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url))
const BASE = join(DIR, 'base')
const OVERLAY = join(DIR, 'overlays/three-replicas')
const SECRETS_EXAMPLE = join(DIR, 'secrets.example.env')
/** What src/server.ts lets the close hooks take beyond DRAIN_MS + OPENCLAW_TIMEOUT_MS (CLOSE_MARGIN_MS). */
const CLOSE_MARGIN_MS = 10_000

/** Config schema variables deliberately kept out of the ConfigMap and the Secret. */
const NOT_WIRED: Record<string, string> = {
  // Serves /demo/login, which mints a token for any user id: it must never be on in a cluster.
  DEMO: 'demo mode mints tokens for anyone'
}
/** Names whose values are credentials: they belong in the Secret, never in the ConfigMap. */
const CREDENTIAL = /(_SECRET|_API_KEY|_PASSWORD|_PUBLIC_KEY|_HEADERS)$|^REDIS_URL$/

interface Manifest {
  apiVersion: string
  kind: string
  metadata: { name: string }
  [field: string]: unknown
}

interface KubeModel {
  readonly apiVersion: string
  readonly kind: string
  new (data: object): { validate(): void }
}
const MODELS: KubeModel[] = [ConfigMap, Secret, Service, Deployment, PodDisruptionBudget, HorizontalPodAutoscaler, Ingress]

const read = (file: string) => readFileSync(file, 'utf8')

/** The format of `configMapGenerator.envs` and `kubectl create secret --from-env-file`. */
function readEnvFile(file: string): Record<string, string> {
  const data: Record<string, string> = {}
  for (const [i, line] of read(file).split('\n').entries()) {
    if (line.trim() === '' || line.startsWith('#')) continue
    const entry = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line)
    if (!entry) throw new Error(`${file}:${i + 1} is not KEY=value: ${line}`)
    if (entry[1] in data) throw new Error(`${file}:${i + 1} sets ${entry[1]} twice`)
    data[entry[1]] = entry[2]
  }
  return data
}

interface Kustomization {
  resources?: string[]
  configMapGenerator?: { name: string; envs: string[] }[]
  patches?: { target: { kind: string; name: string }; patch: string }[]
}
/** The kustomization fields built here; any other field fails the build instead of being ignored. */
const EMULATED = new Set(['apiVersion', 'kind', 'resources', 'configMapGenerator', 'patches'])

function readKustomization(dir: string): Kustomization {
  const k = parse(read(join(dir, 'kustomization.yaml'))) as Kustomization
  const unknown = Object.keys(k).filter((key) => !EMULATED.has(key))
  if (unknown.length) throw new Error(`${dir}/kustomization.yaml uses ${unknown.join(', ')}: not emulated by this test`)
  return k
}

/** Files and folders a kustomization names (resources and generator env files). */
function referencedPaths(dir: string): string[] {
  const k = readKustomization(dir)
  return [...(k.resources ?? []), ...(k.configMapGenerator ?? []).flatMap((g) => g.envs)].map((p) => join(dir, p))
}

/** RFC 6902 `replace` (the only operation the overlays use): the target must exist. */
function applyJsonPatch(target: Manifest, ops: { op: string; path: string; value: unknown }[]): void {
  for (const { op, path, value } of ops) {
    if (op !== 'replace') throw new Error(`JSON patch op ${op} is not emulated by this test`)
    const keys = path.split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))
    const last = keys.pop()!
    let parent: Record<string, unknown> = target
    for (const key of keys) parent = parent[key] as Record<string, unknown>
    if (parent?.[last] === undefined) throw new Error(`JSON patch replaces ${path}, which ${target.metadata.name} lacks`)
    parent[last] = value
  }
}

/**
 * `kubectl kustomize <dir>` for what these kustomizations use: resources (files or other
 * kustomizations), configMapGenerator from env files (kustomize also appends a content hash to
 * the name and rewrites the references; the unhashed name is kept here), JSON 6902 patches.
 */
function build(dir: string): Manifest[] {
  const k = readKustomization(dir)
  const objects = (k.resources ?? []).flatMap((resource): Manifest[] => {
    const path = join(dir, resource)
    if (statSync(path).isDirectory()) return build(path)
    return parseAllDocuments(read(path)).map((doc) => doc.toJS() as Manifest)
  })
  for (const generator of k.configMapGenerator ?? []) {
    const data = Object.assign({}, ...generator.envs.map((file) => readEnvFile(join(dir, file))))
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: generator.name }, data })
  }
  for (const { target, patch } of k.patches ?? []) {
    const matches = objects.filter((o) => o.kind === target.kind && o.metadata.name === target.name)
    if (matches.length !== 1) throw new Error(`patch target ${target.kind}/${target.name} matches ${matches.length} objects`)
    applyJsonPatch(matches[0], parse(patch))
  }
  return objects
}

/** The Secret as `kubectl create secret generic moltbridge-secrets --from-env-file` makes it. */
const secret: Manifest = {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'moltbridge-secrets' },
  type: 'Opaque',
  stringData: readEnvFile(SECRETS_EXAMPLE)
}

function modelOf(object: Manifest): { validate(): void } {
  const Model = MODELS.find((m) => m.apiVersion === object.apiVersion && m.kind === object.kind)
  if (!Model) throw new Error(`no schema model for ${object.apiVersion} ${object.kind}: add it to MODELS`)
  return new Model(object)
}

/**
 * Fields the schema does not know. kubernetes-models accepts unknown fields (a misspelt
 * `readinesProbe` passes validate()), where the API server refuses or drops them; its
 * validators read every property the schema declares, so a field never read is unknown.
 */
function unknownFields(model: { validate(): void }): string[] {
  const seen = new Set<string>()
  const track = (value: unknown, path: string): unknown =>
    value !== null && typeof value === 'object'
      ? new Proxy(value, {
          get(target, key, receiver) {
            const child = `${path}/${String(key)}`
            seen.add(child)
            return track(Reflect.get(target, key, receiver), child)
          }
        })
      : value
  model.validate.call(track(model, ''))
  const unknown: string[] = []
  const walk = (value: unknown, path: string) => {
    if (value === null || typeof value !== 'object') return
    for (const [key, child] of Object.entries(value)) {
      if (seen.has(`${path}/${key}`)) walk(child, `${path}/${key}`)
      else unknown.push(`${path}/${key}`)
    }
  }
  walk(model, '')
  return unknown
}

const base = build(BASE)
const overlay = build(OVERLAY)
const find = <T>(objects: Manifest[], is: (o: unknown) => o is T): T => {
  const found: T[] = []
  for (const o of objects) if (is(o)) found.push(o)
  if (found.length !== 1) throw new Error(`expected one object, found ${found.length}`)
  return found[0]
}
const deployment = find(base, Deployment.is)
const pod = deployment.spec!.template
const container = pod.spec!.containers[0]
const configData = find(base, ConfigMap.is).data ?? {}
const secretData = readEnvFile(SECRETS_EXAMPLE)
/** The configuration the pods start with once the Secret's JWT_SECRET is filled in. */
const config = loadConfig({ ...configData, ...secretData, JWT_SECRET: 'k8s-test-secret-0123456789abcdef' })

t.test('the kustomizations reference only files that exist and use only what is emulated', async (t) => {
  for (const dir of [BASE, OVERLAY]) {
    for (const path of referencedPaths(dir)) t.ok(existsSync(path), `${path.slice(DIR.length)} exists`)
  }
  const missing: Manifest = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }
  t.throws(() => applyJsonPatch(missing, [{ op: 'replace', path: '/data/nope', value: '1' }]), /lacks/, 'a patch on a missing field fails')
})

t.test('every object of the base and the overlay validates against the Kubernetes API schemas', async (t) => {
  const kinds = new Set(base.map((o) => o.kind))
  for (const kind of ['Deployment', 'Service', 'Ingress', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'ConfigMap'])
    t.ok(kinds.has(kind), `the base has a ${kind}`)
  for (const [name, objects] of [['base', base], ['overlay', overlay], ['secret', [secret]]] as const) {
    for (const object of objects) {
      const label = `${name}: ${object.kind}/${object.metadata.name}`
      const model = modelOf(object)
      t.doesNotThrow(() => model.validate(), `${label} validates`)
      t.same(unknownFields(model), [], `${label} has no field the schema does not know`)
    }
  }
})

t.test('the schema checks catch a wrong type and a misspelt field', async (t) => {
  const hpa = structuredClone(find(base, HorizontalPodAutoscaler.is))
  Object.assign(hpa.spec!, { minReplicas: '3' })
  t.throws(() => new HorizontalPodAutoscaler(hpa).validate(), /minReplicas must be integer/)
  const typo = structuredClone(deployment)
  const c = typo.spec!.template.spec!.containers[0]
  Object.assign(c, { readinesProbe: c.readinessProbe })
  delete c.readinessProbe
  t.same(unknownFields(new Deployment(typo)), ['/spec/template/spec/containers/0/readinesProbe'])
})

t.test('probes: readiness on /readyz, liveness on /healthz, both on the port the gateway listens on', async (t) => {
  const port = container.ports?.find((p) => p.name === 'http')
  t.equal(port?.containerPort, config.PORT, 'containerPort "http" is the PORT of the ConfigMap')
  t.equal(container.readinessProbe?.httpGet?.path, '/readyz')
  t.equal(container.readinessProbe?.httpGet?.port, 'http')
  t.equal(container.livenessProbe?.httpGet?.path, '/healthz')
  t.equal(container.livenessProbe?.httpGet?.port, 'http')
})

t.test('shutdown: preStop first, then a grace period above the gateway drain bound', async (t) => {
  const command = container.lifecycle?.preStop?.exec?.command ?? []
  t.equal(command[0], 'sleep', 'preStop sleeps (endpoint removal reaches the load balancers first)')
  const preStopS = Number(command[1])
  t.ok(preStopS >= 3, `preStop sleeps ${preStopS} s`)
  const drainS = (config.DRAIN_MS + config.OPENCLAW_TIMEOUT_MS + CLOSE_MARGIN_MS) / 1000
  const grace = pod.spec!.terminationGracePeriodSeconds ?? 30
  t.ok(grace > preStopS + drainS, `grace ${grace} s > preStop ${preStopS} s + drain bound ${drainS} s (DRAIN_MS ${config.DRAIN_MS})`)
})

t.test('rollout and scaling: surge one, never unavailable, the autoscaler owns the replica count', async (t) => {
  t.equal(deployment.spec?.strategy?.type, 'RollingUpdate')
  t.equal(deployment.spec?.strategy?.rollingUpdate?.maxUnavailable, 0)
  t.equal(deployment.spec?.strategy?.rollingUpdate?.maxSurge, 1)
  t.ok((deployment.spec?.minReadySeconds ?? 0) > 0, 'a new pod proves itself before the next old one drains')
  const labels = pod.metadata?.labels ?? {}
  t.same(deployment.spec?.selector.matchLabels, labels, 'the Deployment selects its own pods')

  const pdb = find(base, PodDisruptionBudget.is)
  t.equal(pdb.spec?.maxUnavailable, 1, 'voluntary disruptions take one pod at a time')
  t.same(pdb.spec?.selector?.matchLabels, labels, 'the PDB covers the pods')

  for (const [name, objects, min] of [['base', base, 2], ['overlay', overlay, 3]] as const) {
    t.equal(find(objects, Deployment.is).spec?.replicas, undefined, `${name}: no replica count for apply to reset`)
    const hpa = find(objects, HorizontalPodAutoscaler.is)
    t.equal(hpa.spec?.minReplicas, min, `${name}: at least ${min} replicas`)
    t.ok(hpa.spec!.maxReplicas > min, `${name}: room to scale up`)
    t.same(hpa.spec?.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata?.name })
    t.equal(hpa.spec?.metrics?.[0].resource?.name, 'cpu', `${name}: scales on CPU`)
  }
})

t.test('service and ingress reach the pods; only the public API is routed, set up for SSE', async (t) => {
  const service = find(base, Service.is)
  t.equal(service.spec?.type, 'ClusterIP')
  for (const [key, value] of Object.entries(service.spec?.selector ?? {})) t.equal(pod.metadata?.labels?.[key], value, `selector ${key}`)
  const servicePort = service.spec?.ports?.[0]
  t.equal(servicePort?.targetPort, 'http', 'the Service targets the container port by name')

  const ingress = find(base, Ingress.is)
  t.equal(ingress.spec?.ingressClassName, 'nginx')
  const annotations = ingress.metadata?.annotations ?? {}
  const nginx = (name: string) => annotations[`nginx.ingress.kubernetes.io/${name}`]
  t.equal(nginx('proxy-buffering'), 'off', 'each event is sent as it is written')
  t.equal(nginx('proxy-http-version'), '1.1')
  for (const name of ['proxy-read-timeout', 'proxy-send-timeout']) {
    const seconds = Number(nginx(name))
    t.ok(seconds >= 300 && seconds * 1000 > config.SSE_HEARTBEAT_MS, `${name} ${seconds} s: an open stream is not cut`)
  }
  t.ok(ingress.spec?.tls?.[0]?.secretName, 'TLS terminates at the ingress')

  const paths = ingress.spec?.rules?.flatMap((r) => r.http?.paths ?? []) ?? []
  for (const p of paths) {
    t.equal(p.backend.service?.name, service.metadata?.name, `${p.path} goes to the Service`)
    t.equal(p.backend.service?.port?.name, servicePort?.name, `${p.path} uses the Service port`)
  }
  // Kubernetes path matching: Exact is equality, Prefix matches whole path elements.
  const routed = (url: string) =>
    paths.some((p) => (p.pathType === 'Exact' ? url === p.path : url === p.path || url.startsWith((p.path ?? '').replace(/\/?$/, '/'))))
  for (const url of ['/v1/rating', '/v1/scores', '/v1/sse-tickets', '/v1/sse-session', '/events/personalized-rating', '/client.js', '/client.d.ts', '/docs'])
    t.ok(routed(url), `${url} is public`)
  for (const url of ['/healthz', '/readyz', '/metrics', '/admin/streams', '/demo/login'])
    t.notOk(routed(url), `${url} stays inside the cluster`)
})

t.test('every variable of the config schema is wired through the ConfigMap or the Secret', async (t) => {
  const refs = container.envFrom ?? []
  t.ok(
    refs.some((r) => r.configMapRef?.name === 'moltbridge-config'),
    'envFrom the generated ConfigMap'
  )
  t.ok(
    refs.some((r) => r.secretRef?.name === secret.metadata.name && !r.secretRef.optional),
    'envFrom the Secret (required: no start without it)'
  )
  t.equal(pod.spec?.enableServiceLinks, false, 'no service-link variables mixed into the environment')

  const schemaKeys = Object.keys(ConfigSchema.properties)
  for (const key of schemaKeys) {
    if (key in NOT_WIRED) {
      t.notOk(key in configData || key in secretData, `${key} is not wired: ${NOT_WIRED[key]}`)
      continue
    }
    t.ok(key in configData || key in secretData, `${key} is wired`)
  }
  for (const key of Object.keys(configData)) {
    t.notOk(key in secretData, `${key} is set in one place only`)
    t.notMatch(key, CREDENTIAL, `${key} is not a credential in the ConfigMap`)
  }
  for (const key of schemaKeys.filter((k) => CREDENTIAL.test(k))) t.ok(key in secretData, `${key} comes from the Secret`)
  for (const { name } of container.env ?? []) t.notOk(name in configData || name in secretData, `env ${name} shadows no wired variable`)
})

t.test('the shipped ConfigMap is a configuration the gateway accepts; an unfilled Secret stops the start', async (t) => {
  t.throws(() => loadConfig({ ...configData, ...secretData }), /JWT_SECRET/, 'the example Secret as it is: refused, naming JWT_SECRET')
  t.equal(config.PORT, 3000)
  t.equal(config.DEMO, false, 'demo mode off')
  t.equal(config.TRUST_PROXY, configData.TRUST_PROXY, 'the ingress controller is trusted for client addresses')
  const defaults = new Map(Object.entries(loadConfig({ JWT_SECRET: 'k8s-test-secret-0123456789abcdef' })))
  const loaded = new Map(Object.entries(config))
  for (const [key, value] of Object.entries(configData))
    if (value === '' && defaults.has(key)) t.equal(loaded.get(key), defaults.get(key), `${key} empty: the built-in default`)
})

t.test('security: non-root, read-only root filesystem, no privilege escalation, no capabilities', async (t) => {
  t.equal(pod.spec?.securityContext?.runAsNonRoot, true)
  t.ok((pod.spec?.securityContext?.runAsUser ?? 0) > 0, 'a numeric non-root user the kubelet can check')
  t.equal(container.securityContext?.readOnlyRootFilesystem, true)
  t.equal(container.securityContext?.allowPrivilegeEscalation, false)
  t.same(container.securityContext?.capabilities?.drop, ['ALL'])
  t.equal(pod.spec?.automountServiceAccountToken, false)
})

const exec = promisify(execFile)

t.test(
  'file descriptors: node raises its soft limit to the hard one, so one SSE stream per fd reaches the runtime limit',
  { skip: process.platform === 'linux' ? false : 'reads /proc' },
  async (t) => {
    const script = "process.stdout.write(require('fs').readFileSync('/proc/self/limits','utf8').split('\\n').find((l)=>l.startsWith('Max open files')))"
    const { stdout } = await exec('sh', ['-c', `ulimit -Sn 256 && exec "${process.execPath}" -e "${script}"`])
    const [soft, hard] = stdout.split(/\s+/).slice(3, 5).map(Number)
    t.ok(hard > 256, `hard limit ${hard}`)
    t.equal(soft, hard, `started with a soft limit of 256, node runs with ${soft}`)
  }
)
