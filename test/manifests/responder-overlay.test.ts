// manifests-responder/ (the base with the component manifests/responder/): the agent gets the
// responder's own service account, a projected token where respond.apiServer looks for it, and per
// action a ClusterRole with that action's verb and nothing more; the base keeps no API access.
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { loadAgentConfig, RESPONSE_ACTIONS } from '../../agent/config.ts'

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: any }

const render = (dir: string) => parseAllDocuments(execFileSync('kubectl', ['kustomize', fileURLToPath(new URL(`../../${dir}`, import.meta.url))], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })).map((d) => d.toJS() as Obj)
const objects = render('manifests-responder')
const base = render('manifests')
const one = (kind: string, name: string): Obj => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name)
  if (!o) throw new Error(`${kind}/${name} is not in the rendered overlay`)
  return o
}
const pod = one('DaemonSet', 'auditrail-agent').spec.template.spec
const agent = pod.containers[0]

t.test('the base keeps no API access; the overlay adds only the responder\'s objects', async (t) => {
  t.notOk(base.some((o) => /Role|responder/.test(o.kind) || o.metadata.name.includes('responder')), 'no role, binding or responder account in the base')
  const added = objects.filter((o) => !base.some((b) => b.kind === o.kind && b.metadata.name === o.metadata.name)).map((o) => `${o.kind}/${o.metadata.name}`)
  t.same(added.sort(), ['ClusterRole', 'ClusterRoleBinding'].flatMap((k) => RESPONSE_ACTIONS.map((a) => `${k}/auditrail-responder-${a}`)).concat(['NetworkPolicy/auditrail-agent-apiserver', 'ServiceAccount/auditrail-responder']).sort())
  t.equal(one('ServiceAccount', 'auditrail-responder').metadata.namespace, 'auditrail')
})

t.test('each action\'s role grants its one verb on its objects, bound to the responder\'s account', async (t) => {
  const grants = (a: string) => one('ClusterRole', `auditrail-responder-${a}`).rules.map((r: any) => `${r.verbs.join(',')} ${r.apiGroups.join(',') || 'core'}:${r.resources.join(',')}`)
  t.same(grants('delete-pod'), ['delete core:pods'])
  t.same(grants('delete-binding'), ['delete rbac.authorization.k8s.io:rolebindings,clusterrolebindings'])
  t.same(grants('scale-to-zero'), ['patch apps:deployments/scale,statefulsets/scale,replicasets/scale'], 'the scale subresource only: the workloads themselves stay unchanged')
  t.same(grants('quarantine'), ['patch core:pods', 'patch apps:deployments,statefulsets,replicasets,daemonsets', 'patch batch:jobs,cronjobs'])
  for (const a of RESPONSE_ACTIONS) {
    const b = one('ClusterRoleBinding', `auditrail-responder-${a}`)
    t.same([b.roleRef.name, b.subjects], [`auditrail-responder-${a}`, [{ kind: 'ServiceAccount', name: 'auditrail-responder', namespace: 'auditrail' }]], a)
  }
})

t.test('the agent runs as the responder, its token and CA where respond.apiServer looks by default', async (t) => {
  t.equal(pod.serviceAccountName, 'auditrail-responder')
  t.equal(pod.automountServiceAccountToken, false, 'no automatic token: the projected one below only')
  const file = join(t.testdir(), 'agent.yaml')
  const yaml = one('ConfigMap', 'auditrail-agent').data['agent.yaml'].replace('\n  enabled: false\n', '\n  enabled: true\n').replace('  actions: []', '  actions: [{rules: [privileged-container], action: delete-pod}]')
  writeFileSync(file, yaml)
  const respond = loadAgentConfig({ file, env: { NODE_NAME: 'cp-1', KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' } }).respond
  t.ok(respond.enabled && respond.dryRun, 'the shipped respond section, turned on, is valid and in dry run')
  const mount = agent.volumeMounts.find((m: any) => m.name === 'responder-token')
  t.equal(mount.readOnly, true)
  const volume = pod.volumes.find((v: any) => v.name === 'responder-token').projected.sources
  for (const [file, source] of [[respond.apiServer.tokenFile, volume.find((s: any) => s.serviceAccountToken)?.serviceAccountToken.path], [respond.apiServer.caFile, volume.find((s: any) => s.configMap)?.configMap.items[0].path]]) {
    t.equal(file, `${mount.mountPath}/${source}`, file)
  }
  t.ok(volume.find((s: any) => s.serviceAccountToken).serviceAccountToken.expirationSeconds <= 3600, 'an expiring token (the responder re-reads it)')
})

t.test('the agent may reach the API server; its other egress rules stay', async (t) => {
  const np = one('NetworkPolicy', 'auditrail-agent-apiserver')
  t.same(np.spec.podSelector, one('NetworkPolicy', 'auditrail-agent').spec.podSelector)
  t.same(np.spec.egress.flatMap((e: any) => e.ports.map((p: any) => p.port)), [443, 6443])
  t.same(one('NetworkPolicy', 'auditrail-agent'), base.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'auditrail-agent'))
})
