// The kustomize base renders, every object is well-formed for its kind and
// consistent with the others (selectors, ports, volumes, config paths), the
// agent is locked down, the ConfigMap's agent.yaml is a valid configuration,
// the alerts parse (promtool) and name real metrics, and the apiserver snippet
// writes the log where the DaemonSet reads it.
// `kubectl create --dry-run=client` is not used: it needs an API server for
// its REST mapping, even with --validate=false.
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parse, parseAllDocuments, stringify } from 'yaml'
import { loadAgentConfig } from '../../agent/config.ts'
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../../agent/process-settings.ts'
import { AgentMetrics } from '../../agent/observe/metrics.ts'
import { CollectorMetrics } from '../../collector/metrics.ts'
import { parseListen } from '../../shared/observe-server.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const MANIFESTS = join(ROOT, 'manifests')

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any }

function render(): Obj[] {
  let out: string
  try {
    out = execFileSync('kubectl', ['kustomize', MANIFESTS], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    throw new Error(`'kubectl kustomize manifests/' failed (kubectl comes with Debian's kubernetes-client package): ${(err as Error).message}`)
  }
  return parseAllDocuments(out).map((d) => d.toJS() as Obj)
}
const objects = render()
const one = (kind: string, name: string): Obj => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name)
  if (!o) throw new Error(`${kind}/${name} is not in the rendered manifests`)
  return o
}
const ds = one('DaemonSet', 'auditrail-agent')
const agentPod = ds.spec.template.spec
const agent = agentPod.containers[0]
const collectorPod = one('Deployment', 'auditrail-collector').spec.template.spec

t.test('renders the expected objects, each with apiVersion, kind, name, in the auditrail namespace', async (t) => {
  t.same(objects.map((o) => `${o.apiVersion} ${o.kind}/${o.metadata.name}`).sort(), [
    'apps/v1 DaemonSet/auditrail-agent',
    'apps/v1 Deployment/auditrail-collector',
    'monitoring.coreos.com/v1 PodMonitor/auditrail-agent',
    'monitoring.coreos.com/v1 PodMonitor/auditrail-collector',
    'monitoring.coreos.com/v1 PrometheusRule/auditrail-agent',
    'monitoring.coreos.com/v1 PrometheusRule/auditrail-collector',
    'networking.k8s.io/v1 NetworkPolicy/auditrail-agent',
    'networking.k8s.io/v1 NetworkPolicy/auditrail-collector',
    'v1 ConfigMap/auditrail-agent',
    'v1 ConfigMap/auditrail-dashboard',
    'v1 ConfigMap/auditrail-rules',
    'v1 Namespace/auditrail',
    'v1 PersistentVolumeClaim/auditrail-collector',
    'v1 Service/auditrail-collector',
    'v1 ServiceAccount/auditrail-agent',
  ])
  for (const o of objects) {
    t.match(o.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${o.kind}/${o.metadata.name}: a DNS label`)
    t.equal(o.metadata.labels?.['app.kubernetes.io/part-of'], 'auditrail', `${o.kind}/${o.metadata.name} labelled`)
    if (o.kind !== 'Namespace') t.equal(o.metadata.namespace, 'auditrail', `${o.kind}/${o.metadata.name} namespaced`)
  }
})

t.test('workloads: selectors match their pods, mounts name volumes, probes name ports, ConfigMaps exist', async (t) => {
  for (const w of objects.filter((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment')) {
    const pod = w.spec.template.spec
    const labels = w.spec.template.metadata.labels
    for (const [k, v] of Object.entries(w.spec.selector.matchLabels)) t.equal(labels[k], v, `${w.metadata.name}: selector ${k}`)
    const volumes = new Set(pod.volumes.map((v: any) => v.name))
    for (const c of pod.containers) {
      t.match(c.image, /^ghcr\.io\/auditrail\/auditrail:\d+\.\d+\.\d+$/, `${w.metadata.name}: a pinned image`)
      for (const m of c.volumeMounts) t.ok(volumes.has(m.name), `${w.metadata.name}: mount ${m.name} has a volume`)
      const ports = new Set(c.ports.map((p: any) => p.name))
      for (const probe of ['livenessProbe', 'readinessProbe']) {
        const port = c[probe].httpGet?.port ?? c[probe].tcpSocket?.port
        t.ok(ports.has(port), `${w.metadata.name}: ${probe} port ${port} is a container port`)
      }
      t.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory, `${w.metadata.name}: requests and a memory limit`)
    }
    for (const v of pod.volumes.filter((v: any) => v.configMap)) one('ConfigMap', v.configMap.name)
  }
  const svc = one('Service', 'auditrail-collector')
  const collectorLabels = one('Deployment', 'auditrail-collector').spec.template.metadata.labels
  for (const [k, v] of Object.entries(svc.spec.selector)) t.equal(collectorLabels[k], v, `the Service selects the collector by ${k}`)
  t.equal(svc.spec.ports[0].targetPort, collectorPod.containers[0].ports[0].name)
  t.equal(one('PersistentVolumeClaim', 'auditrail-collector').metadata.name, collectorPod.volumes.find((v: any) => v.persistentVolumeClaim).persistentVolumeClaim.claimName)
  t.same(collectorPod.containers[0].args.slice(0, 2), ['collector', '--listen=0.0.0.0:8443'])
  const metricsPort = collectorPod.containers[0].ports.find((p: any) => p.name === 'metrics')
  t.ok(collectorPod.containers[0].args.includes(`--metrics-listen=0.0.0.0:${metricsPort.containerPort}`), 'the metrics port is where --metrics-listen serves')
  for (const probe of ['livenessProbe', 'readinessProbe']) t.equal(collectorPod.containers[0][probe].httpGet.port, 'metrics', `the ${probe} uses the metrics port: the connect port wants a client certificate`)
})

t.test('Secrets are not in the base (applying it never replaces a real key); docs/install.md creates each one', async (t) => {
  t.notOk(objects.some((o) => o.kind === 'Secret'))
  const install = readFileSync(join(ROOT, 'docs/install.md'), 'utf8')
  const secrets = [...agentPod.volumes, ...collectorPod.volumes].filter((v: any) => v.secret).map((v: any) => v.secret.secretName)
  t.same(secrets.sort(), ['auditrail-agent-tls', 'auditrail-collector-tls', 'auditrail-collector-trust'], 'no signing key in the cluster: each node makes its own')
  for (const name of secrets) t.match(install, new RegExp(`create secret (generic|tls) ${name} `), `docs/install.md creates ${name}`)
})

t.test('the agent: control-plane nodes only, no API access, locked down, the audit log read-only', async (t) => {
  t.same(agentPod.nodeSelector, { 'node-role.kubernetes.io/control-plane': '' })
  t.ok(agentPod.tolerations.some((x: any) => x.key === 'node-role.kubernetes.io/control-plane' && x.operator === 'Exists' && x.effect === 'NoSchedule'))
  t.equal(agentPod.priorityClassName, 'system-node-critical')
  t.equal(agentPod.serviceAccountName, 'auditrail-agent')
  t.equal(one('ServiceAccount', 'auditrail-agent').automountServiceAccountToken, false)
  t.equal(agentPod.automountServiceAccountToken, false)
  t.notOk(agentPod.hostNetwork || agentPod.hostPID || agentPod.hostIPC, 'no host namespaces')
  t.equal(agentPod.securityContext.seccompProfile.type, 'RuntimeDefault')
  t.equal(agentPod.securityContext.runAsUser, 0, 'root with no capabilities: see docs/install.md')
  const sc = agent.securityContext
  t.equal(sc.readOnlyRootFilesystem, true)
  t.equal(sc.allowPrivilegeEscalation, false)
  t.equal(sc.privileged, false)
  t.same(sc.capabilities.drop, ['ALL'])
  t.notOk(sc.capabilities.add, 'no capability added')
  t.same([agent.livenessProbe.httpGet.path, agent.readinessProbe.httpGet.path], ['/livez', '/readyz'])
  t.equal(agent.ports.find((p: any) => p.name === agent.readinessProbe.httpGet.port).containerPort, 9787)
  t.equal(agent.env.find((e: any) => e.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath, 'spec.nodeName')
  const hostPaths = agentPod.volumes.filter((v: any) => v.hostPath)
  t.same(hostPaths.map((v: any) => [v.hostPath.path, v.hostPath.type]), [['/var/log/kubernetes/audit', 'Directory'], ['/var/lib/auditrail', 'DirectoryOrCreate']])
  for (const m of agent.volumeMounts) {
    if (m.name === 'state') t.notOk(m.readOnly, 'the state directory is the only writable mount')
    else t.equal(m.readOnly, true, `${m.name} is mounted read-only`)
  }
})

t.test("the ConfigMap's agent.yaml is a valid configuration whose paths are the pod's mounts", async (t) => {
  const file = join(t.testdir(), 'agent.yaml')
  writeFileSync(file, one('ConfigMap', 'auditrail-agent').data['agent.yaml'])
  t.same(agent.args, ['agent', '--config', '/etc/auditrail/config/agent.yaml'])
  t.ok(agent.volumeMounts.some((m: any) => m.name === 'config' && m.mountPath === '/etc/auditrail/config'))
  const config = loadAgentConfig({ file, env: { NODE_NAME: 'cp-1' } })
  t.equal(config.node, 'cp-1')
  t.equal(config.streamId, 'cp-1', 'one stream per node')
  t.same(config.collector.urls, [`https://${one('Service', 'auditrail-collector').metadata.name}.auditrail.svc:8443`], 'one URL: the Service spreads agents over the collectors')
  const mountOf = (path: string) => agent.volumeMounts.find((m: any) => path === m.mountPath || path.startsWith(`${m.mountPath}/`))?.name
  t.equal(mountOf(config.tail.path), 'audit-log')
  t.equal(mountOf(config.stateDir), 'state')
  t.equal(mountOf(config.quarantine.dir), 'state')
  t.equal(mountOf(config.signing.keyFile), 'state', 'the node\'s own key stays on the node')
  t.equal(config.signing.createIfMissing, true)
  for (const f of [config.collector.caFile, config.collector.certFile, config.collector.keyFile]) t.equal(mountOf(f), 'tls', f)
  t.same(config.rules.dirs.map(mountOf), ['rules'])
  t.equal(parseListen(config.observe.listen).port, 9787)
  t.throws(() => loadAgentConfig({ file, env: {} }), /node is not set/, 'without the downward API the agent says what is missing')
})

t.test('NetworkPolicies: agent egress to the collector, DNS and the monitoring namespace\'s Alertmanager only, scraped from monitoring only', async (t) => {
  const np = one('NetworkPolicy', 'auditrail-agent')
  t.same(np.spec.policyTypes, ['Ingress', 'Egress'])
  t.same(np.spec.ingress, [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }], ports: [{ protocol: 'TCP', port: 9787 }] }])
  t.same(np.spec.egress.map((e: any) => e.ports.map((p: any) => `${p.protocol}/${p.port}`).join(',')), ['TCP/8443', 'UDP/53,TCP/53', 'TCP/9093'])
  t.same(np.spec.egress[2].to, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'alertmanager' } } }])
  t.same(np.spec.egress[0].to, [{ podSelector: { matchLabels: one('Deployment', 'auditrail-collector').spec.selector.matchLabels } }])
  const cnp = one('NetworkPolicy', 'auditrail-collector')
  t.same(cnp.spec.ingress[0].from, [{ podSelector: { matchLabels: ds.spec.selector.matchLabels } }])
  t.same(cnp.spec.ingress[1], { from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }], ports: [{ protocol: 'TCP', port: 9788 }] }, 'the collector is scraped from monitoring only')
  t.same(cnp.spec.egress, [])
})

/** A collector's registry with every family, the optional ones too (a file store's free bytes, an index's lag). */
const collectorRegistry = () =>
  new CollectorMetrics({ streams: () => 0, lastBatchAges: async () => [], openConnections: () => 0, unready: async () => undefined, freeBytes: async () => 0, indexLag: () => ({ batches: 0, seconds: 0 }) }).registry

t.test('monitoring: the PodMonitor scrapes the metrics port; alerts parse (promtool) and name real metrics', async (t) => {
  const pm = one('PodMonitor', 'auditrail-agent')
  t.same(pm.spec.selector.matchLabels, ds.spec.selector.matchLabels)
  t.ok(agent.ports.some((p: any) => p.name === pm.spec.podMetricsEndpoints[0].port))
  const cpm = one('PodMonitor', 'auditrail-collector')
  t.same(cpm.spec.selector.matchLabels, one('Deployment', 'auditrail-collector').spec.selector.matchLabels)
  t.ok(collectorPod.containers[0].ports.some((p: any) => p.name === cpm.spec.podMetricsEndpoints[0].port))
  const rule = one('PrometheusRule', 'auditrail-agent')
  const rules = rule.spec.groups.flatMap((g: any) => g.rules)
  t.same(rules.map((r: any) => r.alert).sort(), ['AuditrailAgentDown', 'AuditrailAgentLagging', 'AuditrailAgentNotReady', 'AuditrailChainRejected', 'AuditrailGapDeclared', 'AuditrailNoAcknowledgement', 'AuditrailQuarantineRising', 'AuditrailResponseFailed', 'AuditrailSendFailing'])
  const collectorRule = one('PrometheusRule', 'auditrail-collector')
  const collectorRules = collectorRule.spec.groups.flatMap((g: any) => g.rules)
  t.same(collectorRules.map((r: any) => r.alert).sort(), ['AuditrailCollectorDiskFilling', 'AuditrailCollectorDown', 'AuditrailCollectorIndexLagging', 'AuditrailCollectorRefusing', 'AuditrailCollectorStoreFailing', 'AuditrailCollectorStoreNotReady', 'AuditrailNodeSilent'])
  const known = new Set([...(await new AgentMetrics().registry.getMetricsAsJSON()), ...(await collectorRegistry().getMetricsAsJSON())].map((m) => m.name))
  for (const r of [...rules, ...collectorRules]) {
    t.ok(['warning', 'critical'].includes(r.labels.severity) && r.annotations.summary, `${r.alert}: severity and summary`)
    // A histogram's series carry its name plus _bucket, _count or _sum.
    for (const name of r.expr.match(/auditrail_[a-z_]+/g) ?? []) t.ok(known.has(name) || known.has(name.replace(/_(bucket|count|sum)$/, '')), `${r.alert}: ${name} is a metric of agent/observe/metrics.ts or collector/metrics.ts`)
  }
  t.match(rules.find((r: any) => r.alert === 'AuditrailAgentDown').expr, `job="${pm.metadata.namespace}/${pm.metadata.name}"`, 'the job label the PodMonitor gives')
  t.match(collectorRules.find((r: any) => r.alert === 'AuditrailCollectorDown').expr, `job="${cpm.metadata.namespace}/${cpm.metadata.name}"`, 'the job label the collector\'s PodMonitor gives')
  const file = join(t.testdir(), 'rules.yaml')
  writeFileSync(file, stringify({ groups: [...rule.spec.groups, ...collectorRule.spec.groups] }))
  const promtool = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' })
  if (promtool.error) t.fail(`promtool not found: install Debian's prometheus package (apt-get install -y prometheus): ${promtool.error.message}`)
  else t.equal(promtool.status, 0, promtool.stdout + promtool.stderr)
})

t.test('the dashboard ships in a ConfigMap Grafana\'s sidecar loads, as it is in manifests/dashboards/', async (t) => {
  const cm = one('ConfigMap', 'auditrail-dashboard')
  t.equal(cm.metadata.labels?.grafana_dashboard, '1')
  t.equal(cm.data['auditrail.json'], readFileSync(join(MANIFESTS, 'dashboards/auditrail.json'), 'utf8'))
  // Live: test/manifests/dashboard-prometheus.test.ts runs every query against Prometheus.
})

t.test('the apiserver snippet writes the log where the DaemonSet reads it, with the shipped policy', async (t) => {
  const kubeadm = parse(readFileSync(join(MANIFESTS, 'apiserver/kubeadm-clusterconfiguration.yaml'), 'utf8'))
  t.equal(kubeadm.kind, 'ClusterConfiguration')
  const args = Object.fromEntries(kubeadm.apiServer.extraArgs.map((a: any) => [a.name, a.value]))
  const flags = Object.fromEntries(readFileSync(join(MANIFESTS, 'apiserver/kube-apiserver-flags.txt'), 'utf8').split('\n').filter((l) => l.startsWith('--')).map((l) => l.slice(2).split('=')))
  t.same(args, flags, 'the flags file and the kubeadm snippet agree')
  t.equal(args['audit-log-format'], 'json')
  t.equal(dirname(args['audit-log-path']), agentPod.volumes.find((v: any) => v.name === 'audit-log').hostPath.path)
  const mounted = (path: string) => kubeadm.apiServer.extraVolumes.some((v: any) => v.hostPath === path && v.mountPath === path)
  t.ok(mounted(args['audit-policy-file']), 'the policy file is mounted into the apiserver')
  t.ok(mounted(dirname(args['audit-log-path'])), 'the log directory is mounted into the apiserver')
  t.equal(parse(readFileSync(join(MANIFESTS, 'apiserver/audit-policy.yaml'), 'utf8')).kind, 'Policy', 'blind spots: test/agent/policy/cli.test.ts')
})

t.test('the image starts node with the agent\'s V8 flags and environment', async (t) => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const entrypoint = /^ENTRYPOINT (.*)$/m.exec(dockerfile)
  t.ok(entrypoint, 'the Dockerfile has an ENTRYPOINT')
  t.same(JSON.parse(entrypoint![1]!), ['node', ...AGENT_NODE_FLAGS, 'programs/main.js'], 'the compiled binary (scripts/build.ts)')
  // ENV instructions, continuation lines joined, split into KEY=value words.
  const env = [...dockerfile.replace(/\\\n/g, ' ').matchAll(/^ENV (.*)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/))
  for (const [key, value] of Object.entries(AGENT_ENV)) t.ok(env.includes(`${key}=${value}`), `ENV sets ${key}=${value}`)
})
