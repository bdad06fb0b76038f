import type { FastifyInstance } from 'fastify'

/** The value of a counter or gauge for one label set (no labels: the unlabelled series). */
export async function metricValue(
  metric: { get(): Promise<{ values: { value: number; labels: object }[] }> },
  labels: Record<string, string> = {}
): Promise<number> {
  const { values } = await metric.get()
  const key = JSON.stringify(labels)
  return values.find((v) => JSON.stringify(v.labels) === key)?.value ?? 0
}

/** One sample of a metric from the gateway's /metrics text (0 when absent). */
export async function metric(app: FastifyInstance, name: string, labels = ''): Promise<number> {
  const res = await app.inject('/metrics')
  const line = res.body.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `))
  return line ? Number(line.split(' ').pop()) : 0
}

/** One unlabelled sample from a gateway's /metrics over HTTP, as an operator scrapes it; 0 when it cannot be read. */
export async function scrape(url: string, name: string): Promise<number> {
  const text = await fetch(`${url}/metrics`).then((r) => r.text(), () => '')
  return Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? 0)
}
