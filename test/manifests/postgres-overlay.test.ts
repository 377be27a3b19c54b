// manifests-postgres/: the collector as stateless replicas on PostgreSQL, rendered with kubectl kustomize
// and checked for what the overlay promises (replicas, disruption budget, no volume, the database URL and
// password from a Secret and never on the command line, egress to the database).
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseAllDocuments } from 'yaml'

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: any }

const overlay = fileURLToPath(new URL('../../manifests-postgres', import.meta.url))
const objects = parseAllDocuments(execFileSync('kubectl', ['kustomize', overlay], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })).map((d) => d.toJS() as Obj)
const one = (kind: string, name: string): Obj => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name)
  if (!o) throw new Error(`${kind}/${name} is not in the rendered overlay`)
  return o
}
const deployment = one('Deployment', 'auditrail-collector')
const pod = deployment.spec.template.spec
const container = pod.containers[0]

t.test('two replicas, rolling one at a time, a disruption budget that keeps one, no volume claim', async (t) => {
  t.equal(deployment.spec.replicas, 2)
  t.same(deployment.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } })
  const pdb = one('PodDisruptionBudget', 'auditrail-collector')
  t.equal(pdb.metadata.namespace, 'auditrail')
  t.same(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels, 'the budget covers the collector\'s pods')
  t.ok(pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < deployment.spec.replicas, 'one may go, one stays')
  t.notOk(objects.some((o) => o.kind === 'PersistentVolumeClaim'), 'no claim: the store is the database')
  t.notOk(pod.volumes.some((v: any) => v.persistentVolumeClaim), 'no volume for a store')
  t.notOk(container.volumeMounts.some((m: any) => m.name === 'store'))
  t.ok(objects.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'auditrail'), 'everything in the auditrail namespace')
})

t.test('the database URL and password come from a Secret; the password never reaches the command line', async (t) => {
  const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.valueFrom?.secretKeyRef]))
  t.same(env.AUDITRAIL_STORE_URL, { name: 'auditrail-collector-db', key: 'url' })
  t.same(env.PGPASSWORD, { name: 'auditrail-collector-db', key: 'password' }, 'libpq\'s variable, which the store reads')
  t.ok(container.args.includes('--store=$(AUDITRAIL_STORE_URL)'), 'the URL expanded by the kubelet into --store')
  t.notOk(container.args.some((a: string) => /PGPASSWORD|password/i.test(a)), 'no password in the arguments')
  t.same(container.args.slice(0, 2), ['collector', '--listen=0.0.0.0:8443'])
})

t.test('the probes and the PodMonitor find the metrics port served: the overlay\'s argument list keeps --metrics-listen', async (t) => {
  const port = container.ports.find((p: any) => p.name === 'metrics')?.containerPort
  t.ok(container.args.includes(`--metrics-listen=0.0.0.0:${port}`), `--metrics-listen on the metrics port (${port})`)
  for (const probe of ['livenessProbe', 'readinessProbe']) t.equal(container[probe].httpGet.port, 'metrics', `${probe} on it`)
})

t.test('the collector may reach DNS and PostgreSQL, and still takes connections from the agents only', async (t) => {
  const np = one('NetworkPolicy', 'auditrail-collector')
  const ports = np.spec.egress.flatMap((r: any) => r.ports.map((p: any) => `${p.protocol}/${p.port}`))
  t.same(ports.sort(), ['TCP/53', 'TCP/5432', 'UDP/53'])
  t.same(np.spec.ingress[0].from, [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'auditrail-agent' } } }])
})
