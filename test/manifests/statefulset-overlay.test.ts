// manifests-statefulset/: the file-store collector as a StatefulSet, rendered with kubectl kustomize and
// checked for what the overlay promises: one replica with its claim from a template (kept when the
// StatefulSet goes), the base's pod unchanged (image, arguments, probes, security context, mounts), and the
// Service, NetworkPolicy and PodMonitor of the base still selecting it.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseAllDocuments } from 'yaml'

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any }

function render(dir: string): Obj[] {
  const path = fileURLToPath(new URL(`../../${dir}`, import.meta.url))
  return parseAllDocuments(execFileSync('kubectl', ['kustomize', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })).map((d) => d.toJS() as Obj)
}
const objects = render('manifests-statefulset')
const base = render('manifests')
const find = (from: Obj[], kind: string, name: string): Obj => {
  const o = from.find((x) => x.kind === kind && x.metadata.name === name)
  if (!o) throw new Error(`${kind}/${name} is not rendered`)
  return o
}
const sts = find(objects, 'StatefulSet', 'auditrail-collector')
const deployment = find(base, 'Deployment', 'auditrail-collector')

t.test('the collector is a StatefulSet of one, in place of the Deployment and its claim; the rest is the base', async (t) => {
  const names = (from: Obj[]) => from.map((o) => `${o.kind}/${o.metadata.name}`).sort()
  const expected = names(base).filter((n) => n !== 'Deployment/auditrail-collector' && n !== 'PersistentVolumeClaim/auditrail-collector')
  t.same(names(objects), [...expected, 'StatefulSet/auditrail-collector'].sort())
  t.equal(sts.spec.replicas, 1, 'one writer of the append-only store')
  t.equal(sts.metadata.namespace, 'auditrail')
  t.equal(sts.metadata.labels?.['app.kubernetes.io/part-of'], 'auditrail')
  t.equal(sts.spec.podManagementPolicy, 'OrderedReady')
  t.same(sts.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: 'Retain', whenScaled: 'Retain' }, 'the store outlives the StatefulSet: it is evidence')
})

t.test('the store\'s claim comes from a template, as the base\'s claim asked', async (t) => {
  const claim = find(base, 'PersistentVolumeClaim', 'auditrail-collector')
  t.equal(sts.spec.volumeClaimTemplates.length, 1)
  const template = sts.spec.volumeClaimTemplates[0]
  t.equal(template.metadata.name, 'store', 'named as the base\'s volume, which the container mounts')
  t.same(template.spec, claim.spec, 'same access mode and size as the base\'s claim')
})

t.test('the pod is the base Deployment\'s: image, arguments, probes, security context, mounts; only the store volume moves to the claim template', async (t) => {
  const pod = sts.spec.template.spec
  const basePod = deployment.spec.template.spec
  t.same(sts.spec.template.metadata, deployment.spec.template.metadata, 'same labels')
  t.same(sts.spec.selector, deployment.spec.selector)
  t.same(pod.containers, basePod.containers, 'same container: image, args (--store on the mounted directory), ports, probes, resources, securityContext, mounts')
  t.same(pod.securityContext, basePod.securityContext)
  const { volumes, ...rest } = pod
  const { volumes: baseVolumes, ...baseRest } = basePod
  t.same(rest, baseRest, 'every other pod setting alike')
  t.same(volumes, baseVolumes.filter((v: any) => v.name !== 'store'), 'the Secrets as volumes; the store from the template')
  t.ok(basePod.volumes.find((v: any) => v.name === 'store')?.persistentVolumeClaim, 'the base mounted a claim there')
  const mounted = new Set([...volumes.map((v: any) => v.name), ...sts.spec.volumeClaimTemplates.map((c: any) => c.metadata.name)])
  for (const m of pod.containers[0].volumeMounts) t.ok(mounted.has(m.name), `mount ${m.name} has a volume`)
})

t.test('its Service, NetworkPolicy and PodMonitor select its pods', async (t) => {
  const labels = sts.spec.template.metadata.labels
  const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v)
  const service = find(objects, 'Service', sts.spec.serviceName)
  t.ok(selects(service.spec.selector), 'the governing Service (serviceName) selects the pod')
  t.ok(service.spec.ports.some((p: any) => p.targetPort === 'connect'))
  t.ok(selects(find(objects, 'NetworkPolicy', 'auditrail-collector').spec.podSelector.matchLabels), 'the NetworkPolicy applies')
  t.ok(selects(find(objects, 'PodMonitor', 'auditrail-collector').spec.selector.matchLabels), 'Prometheus scrapes it')
})
