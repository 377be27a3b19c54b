// The kustomize base renders, every object is well-formed for its kind, the
// agent is locked down, and the ConfigMap's agent.yaml is a valid configuration.
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { loadAgentConfig } from '../../agent/config.ts'

const MANIFESTS = fileURLToPath(new URL('../../manifests', import.meta.url))

function render(): any[] {
  let out: string
  try {
    out = execFileSync('kubectl', ['kustomize', MANIFESTS], { encoding: 'utf8' })
  } catch (err) {
    throw new Error(`'kubectl kustomize manifests/' failed (is kubectl installed?): ${(err as Error).message}`)
  }
  return parseAllDocuments(out).map((d) => d.toJS())
}

t.test('renders; every object has apiVersion, kind, name, and sits in the auditrail namespace', async (t) => {
  const objects = render()
  t.ok(objects.length >= 10)
  for (const o of objects) {
    t.ok(o.apiVersion && o.kind && o.metadata?.name, `${o.kind}/${o.metadata?.name}`)
    if (o.kind !== 'Namespace') t.equal(o.metadata.namespace, 'auditrail', `${o.kind}/${o.metadata.name} namespaced`)
  }
  const kinds = new Set(objects.map((o) => o.kind))
  for (const k of ['Namespace', 'ServiceAccount', 'ConfigMap', 'Secret', 'DaemonSet', 'NetworkPolicy', 'Deployment', 'Service', 'PersistentVolumeClaim', 'PrometheusRule']) t.ok(kinds.has(k), k)
})

t.test('the agent runs on control-plane nodes only, locked down, with the audit log read-only', async (t) => {
  const ds = render().find((o) => o.kind === 'DaemonSet')
  const pod = ds.spec.template.spec
  t.same(pod.nodeSelector, { 'node-role.kubernetes.io/control-plane': '' })
  t.ok(pod.tolerations.some((x: any) => x.key === 'node-role.kubernetes.io/control-plane'))
  t.equal(pod.automountServiceAccountToken, false)
  t.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault')
  const c = pod.containers[0]
  t.equal(c.securityContext.readOnlyRootFilesystem, true)
  t.equal(c.securityContext.allowPrivilegeEscalation, false)
  t.same(c.securityContext.capabilities.drop, ['ALL'])
  t.notOk(c.securityContext.capabilities.add, 'no capability added')
  t.equal(c.livenessProbe.httpGet.path, '/livez')
  t.equal(c.readinessProbe.httpGet.path, '/readyz')
  t.ok(c.resources.limits.memory && c.resources.requests.cpu)
  const mount = c.volumeMounts.find((m: any) => m.mountPath === '/var/log/kubernetes/audit')
  t.equal(mount.readOnly, true)
  const key = pod.volumes.find((v: any) => v.name === 'signing-key')
  t.equal(key.secret.defaultMode, 0o400, 'the signing key is readable by its owner only')
  t.equal(c.env.find((e: any) => e.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath, 'spec.nodeName')
})

t.test("the ConfigMap's agent.yaml is a valid configuration", async (t) => {
  const cm = render().find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'auditrail-agent')
  const file = join(t.testdir(), 'agent.yaml')
  writeFileSync(file, cm.data['agent.yaml'])
  const config = loadAgentConfig({ file, env: { NODE_NAME: 'cp-1' } })
  t.equal(config.streamId, 'cp-1')
  t.equal(config.collector.url, 'https://auditrail-collector.auditrail.svc:8443')
})
