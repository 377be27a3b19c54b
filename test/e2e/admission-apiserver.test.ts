// Parity of `auditrail rules admission` with the rules themselves, on a real
// kube-apiserver (v1.36, the runner in ../shared/tools/kube-apiserver): every
// built-in policy is applied, a set of requests is sent, and for each request
// the rules the API server warned about (Warn) must be exactly the rules the
// agent finds in that request's own line of the API server's audit log; then
// with Deny, the same requests (dry run) are refused with the rules' messages
// or admitted, and the agent finds each refusal as its rule's finding, blocked at admission. Each exported rule has requests that fire it and requests that do not.
//
// Needs the runner (AUDITRAIL_KUBE_APISERVER=DIR, else ../shared/tools/kube-apiserver
// beside the repository), etcd (Debian's etcd-server, or ETCD=path), openssl and python3
// (run.sh uses them); skipped, saying which is missing, without them.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { decodeAuditLine } from '../../agent/audit/event.ts'
import { admissionPolicies } from '../../agent/guard/admission.ts'
import { BUILTIN_RULES_DIR, loadRuleSet, RuleSet, type RuleFinding } from '../../agent/guard/rule-set.ts'
import { request } from 'undici'
import { missing, startKubeApiserver } from './kube-apiserver.ts'

type Req = { method: 'POST' | 'PATCH' | 'PUT'; path: string; body: unknown; contentType?: string }
/** `as`: whose token sends it (default the admin): a node or a controller, for the rules' exceptions. */
type Fixture = { name: string; expect: string[]; as?: Identity; send: (suffix: string) => Req }
type Identity = 'admin' | 'node' | 'controller'

const NS = 'parity'
const container = (extra: Record<string, unknown> = {}) => ({ name: 'c', image: 'busybox:1.36', ...extra })
const pod = (name: string, spec: Record<string, unknown> = {}, namespace = NS) => (suffix: string): Req => ({
  method: 'POST',
  path: `/api/v1/namespaces/${namespace}/pods`,
  body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: name + suffix, namespace }, spec: { containers: [container()], ...spec } },
})
/** A pod controlled by a ReplicaSet, as its controller creates it. */
const owned = (name: string, spec: Record<string, unknown> = {}) => (suffix: string): Req => {
  const req = pod(name, spec)(suffix)
  const body = req.body as { metadata: Record<string, unknown> }
  body.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs-1', uid: '00000000-0000-4000-8000-000000000001', controller: true }]
  return req
}
const create = (path: string, body: { metadata: { name: string } } & Record<string, unknown>) => (suffix: string): Req => ({ method: 'POST', path, body: { ...body, metadata: { ...body.metadata, name: body.metadata.name + suffix } } })
const rbac = (kind: string, resource: string, namespaced: boolean, name: string, rest: Record<string, unknown>) =>
  create(`/apis/rbac.authorization.k8s.io/v1/${namespaced ? `namespaces/${NS}/` : ''}${resource}`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind, metadata: { name }, ...rest })
const subjects = [{ kind: 'User', name: 'mallory', apiGroup: 'rbac.authorization.k8s.io' }]
const ephemeral = (target: string, securityContext: Record<string, unknown> | undefined) => (): Req => ({
  method: 'PATCH',
  path: `/api/v1/namespaces/${NS}/pods/${target}/ephemeralcontainers`,
  contentType: 'application/strategic-merge-patch+json',
  body: { spec: { ephemeralContainers: [{ name: 'debugger', image: 'busybox:1.36', ...(securityContext ? { securityContext } : {}) }] } },
})
const podTemplate = (spec: Record<string, unknown>) => ({ metadata: { labels: { app: 'p' } }, spec: { containers: [container()], ...spec } })

const FIXTURES: Fixture[] = [
  { name: 'pod-plain', expect: [], send: pod('pod-plain') },
  { name: 'pod-privileged', expect: ['privileged-container'], send: pod('pod-privileged', { containers: [container({ securityContext: { privileged: true } })] }) },
  { name: 'deployment-privileged-init', expect: ['privileged-container'], send: create(`/apis/apps/v1/namespaces/${NS}/deployments`, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'deployment-privileged-init' }, spec: { selector: { matchLabels: { app: 'p' } }, template: podTemplate({ initContainers: [container({ name: 'init', securityContext: { privileged: true } })] }) } }) },
  { name: 'pod-cap-sys-admin', expect: ['dangerous-capabilities-added'], send: pod('pod-cap-sys-admin', { containers: [container({ securityContext: { capabilities: { add: ['CAP_SYS_ADMIN'] } } })] }) },
  { name: 'pod-cap-net-bind', expect: [], send: pod('pod-cap-net-bind', { containers: [container({ securityContext: { capabilities: { add: ['NET_BIND_SERVICE'] } } })] }) },
  { name: 'cronjob-hostpath-etc', expect: ['sensitive-host-path-mount'], send: create(`/apis/batch/v1/namespaces/${NS}/cronjobs`, { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'cronjob-hostpath-etc' }, spec: { schedule: '@hourly', jobTemplate: { spec: { template: podTemplate({ restartPolicy: 'Never', volumes: [{ name: 'h', hostPath: { path: '/etc' } }] }) } } } }) },
  { name: 'pod-hostpath-data', expect: [], send: pod('pod-hostpath-data', { volumes: [{ name: 'h', hostPath: { path: '/data/app' } }] }) },
  { name: 'pod-host-network', expect: ['host-network'], send: pod('pod-host-network', { hostNetwork: true }) },
  { name: 'pod-host-network-by-node', expect: [], as: 'node', send: pod('pod-host-network-by-node', { hostNetwork: true }) },
  { name: 'pod-host-pid', expect: ['host-pid'], send: pod('pod-host-pid', { hostPID: true }) },
  { name: 'pod-host-ipc', expect: ['host-ipc'], send: pod('pod-host-ipc', { hostIPC: true }) },
  { name: 'pod-root', expect: ['root-with-privilege-escalation'], send: pod('pod-root', { securityContext: { runAsUser: 0 } }) },
  { name: 'pod-root-no-escalation', expect: [], send: pod('pod-root-no-escalation', { securityContext: { runAsUser: 0 }, containers: [container({ securityContext: { allowPrivilegeEscalation: false } })] }) },
  { name: 'kube-system-pod-nginx', expect: ['pod-in-system-namespace-untrusted-image'], send: pod('kube-system-pod-nginx', { containers: [container({ image: 'nginx:1.27' })] }, 'kube-system') },
  { name: 'kube-system-pod-pause', expect: [], send: pod('kube-system-pod-pause', { containers: [container({ image: 'registry.k8s.io/pause:3.10' })] }, 'kube-system') },
  { name: 'kube-system-pod-nginx-by-node', expect: [], as: 'node', send: pod('kube-system-pod-nginx-by-node', { containers: [container({ image: 'nginx:1.27' })] }, 'kube-system') },
  { name: 'ephemeral-privileged', expect: ['ephemeral-container-with-privileges'], send: ephemeral('target-a', { privileged: true }) },
  { name: 'ephemeral-plain', expect: [], send: ephemeral('target-b', undefined) },
  { name: 'binding-cluster-admin', expect: ['binding-to-cluster-admin'], send: rbac('ClusterRoleBinding', 'clusterrolebindings', false, 'binding-cluster-admin', { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' }, subjects }) },
  { name: 'binding-system-role', expect: ['binding-to-system-role'], send: rbac('ClusterRoleBinding', 'clusterrolebindings', false, 'binding-system-role', { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:node-proxier' }, subjects }) },
  { name: 'rolebinding-cluster-admin', expect: ['rolebinding-to-cluster-admin'], send: rbac('RoleBinding', 'rolebindings', true, 'rolebinding-cluster-admin', { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' }, subjects }) },
  // A controller making the privileged pod of a workload: the workload's create carried the high finding.
  { name: 'controller-pod-privileged', expect: ['controller-made-pod-outside-baseline'], as: 'controller', send: owned('controller-pod-privileged', { containers: [container({ securityContext: { privileged: true } })] }) },
  { name: 'controller-pod-plain', expect: [], as: 'controller', send: owned('controller-pod-plain') },
  { name: 'binding-view', expect: [], send: rbac('RoleBinding', 'rolebindings', true, 'binding-view', { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' }, subjects }) },
  { name: 'role-wildcard', expect: ['role-with-wildcard'], send: rbac('ClusterRole', 'clusterroles', false, 'role-wildcard', { rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['*'] }] }) },
  { name: 'role-secrets', expect: ['role-with-sensitive-grant'], send: rbac('Role', 'roles', true, 'role-secrets', { rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }] }) },
  { name: 'role-write', expect: ['role-with-write-access'], send: rbac('Role', 'roles', true, 'role-write', { rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['create'] }] }) },
  { name: 'role-read', expect: [], send: rbac('Role', 'roles', true, 'role-read', { rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] }] }) },
  { name: 'service-node-port', expect: ['service-exposed'], send: create(`/api/v1/namespaces/${NS}/services`, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'service-node-port' }, spec: { type: 'NodePort', ports: [{ port: 80 }] } }) },
  { name: 'service-cluster-ip', expect: [], send: create(`/api/v1/namespaces/${NS}/services`, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'service-cluster-ip' }, spec: { ports: [{ port: 80 }] } }) },
  { name: 'ingress-plain', expect: ['ingress-without-tls'], send: create(`/apis/networking.k8s.io/v1/namespaces/${NS}/ingresses`, { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'ingress-plain' }, spec: { defaultBackend: { service: { name: 's', port: { number: 80 } } } } }) },
  { name: 'ingress-tls', expect: [], send: create(`/apis/networking.k8s.io/v1/namespaces/${NS}/ingresses`, { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'ingress-tls' }, spec: { tls: [{ hosts: ['a.example'], secretName: 's' }], defaultBackend: { service: { name: 's', port: { number: 80 } } } } }) },
  { name: 'csr-approve', expect: ['csr-approved'], send: () => approval('csr-a', 'Approved') },
  { name: 'csr-deny', expect: [], send: () => approval('csr-b', 'Denied') },
]

let csrRequest = ''
function csr(name: string) {
  return { apiVersion: 'certificates.k8s.io/v1', kind: 'CertificateSigningRequest', metadata: { name }, spec: { request: csrRequest, signerName: 'example.com/parity', usages: ['digital signature'] } }
}
function approval(name: string, type: 'Approved' | 'Denied'): Req {
  return { method: 'PUT', path: `/apis/certificates.k8s.io/v1/certificatesigningrequests/${name}/approval`, body: { ...csr(name), status: { conditions: [{ type, status: 'True', reason: 'Parity', message: 'parity test' }] } } }
}

if (missing.length > 0) {
  t.test('admission policies on a real kube-apiserver', { skip: `missing: ${missing.join('; ')}` }, () => {})
} else {
  t.test('exported policies warn and deny exactly where the rules fire, on kube-apiserver v1.36', { timeout: 150_000 }, async (t) => {
    // An admin, and a node and a controller identity for the rules' exceptions (system:masters too, so
    // that RBAC does not stand between them and the policies).
    const tokens: Record<Identity, string> = { admin: 'a'.repeat(32), node: 'n'.repeat(32), controller: 'c'.repeat(32) }
    const api = await startKubeApiserver(t, `${tokens.admin},admin,admin-uid,"system:masters"\n${tokens.node},system:node:n1,node-uid,"system:nodes,system:masters"\n${tokens.controller},system:serviceaccount:kube-system:replicaset-controller,rs-uid,"system:serviceaccounts,system:masters"\n`)
    const dir = api.dir
    const send = async (req: Req, as: Identity = 'admin', dryRun = false) => {
      const res = await request(`${api.url}${req.path}${dryRun ? '?dryRun=All' : ''}`, {
        method: req.method,
        dispatcher: api.dispatcher,
        headers: { authorization: `Bearer ${tokens[as]}`, 'content-type': req.contentType ?? 'application/json' },
        body: JSON.stringify(req.body),
      })
      const text = await res.body.text()
      const warning = res.headers.warning
      const warnings = (Array.isArray(warning) ? warning : warning ? [warning] : []).join('\n')
      return { status: res.statusCode, text, warnings, auditID: String(res.headers['audit-id']) }
    }
    const must = async (req: Req) => {
      const r = await send(req)
      if (r.status >= 300) throw new Error(`${req.method} ${req.path}: ${r.status} ${r.text}`)
    }
    const ruleIds = (text: string) => [...new Set([...text.matchAll(/auditrail rule ([a-z0-9-]+) \(/g)].map((m) => m[1]!))].sort()

    const rules = loadRuleSet([BUILTIN_RULES_DIR]).rules
    const { policies } = admissionPolicies(rules, 'warn')
    const exported = new Set(policies.map((p) => p.rule.id))
    t.same([...exported].filter((id) => !FIXTURES.some((f) => f.expect.includes(id))), [], 'every exported rule has a request that fires it')

    // The cluster the requests need: a namespace, service accounts (no controller makes them), target pods, CSRs.
    csrRequest = Buffer.from(execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=parity'], { stdio: ['ignore', 'pipe', 'ignore'] })).toString('base64')
    await must({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } } })
    for (const ns of [NS, 'kube-system']) await must({ method: 'POST', path: `/api/v1/namespaces/${ns}/serviceaccounts`, body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } } })
    for (const name of ['target-a', 'target-b']) await must(pod(name)(''))
    for (const name of ['csr-a', 'csr-b']) await must({ method: 'POST', path: '/apis/certificates.k8s.io/v1/certificatesigningrequests', body: csr(name) })

    for (const p of policies) await must({ method: 'POST', path: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies', body: p.policy })
    for (const p of policies) await must({ method: 'POST', path: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings', body: p.binding })
    // A policy takes effect a moment after it is created: probe (dry run) until the last one bound answers.
    const probe = FIXTURES.find((f) => f.expect.includes(policies.at(-1)!.rule.id))!
    const until = async (ok: (r: Awaited<ReturnType<typeof send>>) => boolean, what: string) => {
      for (let i = 0; i < 100; i++) {
        if (ok(await send(probe.send('-probe'), probe.as, true))) return
        await new Promise((r) => setTimeout(r, 200))
      }
      throw new Error(`the policies did not take effect within 20 s (${what})`)
    }
    await until((r) => r.warnings.includes(`auditrail rule ${probe.expect[0]} (`), 'warn')

    const sent = new Map<string, { fixture: Fixture; warned: string[] }>()
    for (const f of FIXTURES) {
      const r = await send(f.send(''), f.as)
      t.ok(r.status < 300, `${f.name}: admitted (${r.status})`, { body: r.text.slice(0, 300) })
      sent.set(r.auditID, { fixture: f, warned: ruleIds(r.warnings) })
    }

    // What the agent makes of the same requests: their lines in the API server's audit log (it rotates at 1 MB).
    const exportedRules = new RuleSet(rules.filter((r) => exported.has(r.id)))
    /** The events of the audit log (rotated backups included) at ResponseComplete. */
    const completeEvents = function* () {
      const auditDir = join(dir, 'audit')
      for (const file of readdirSync(auditDir)) {
        const bytes = readFileSync(join(auditDir, file))
        for (const line of (file.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8').split('\n')) {
          if (!line.includes('"ResponseComplete"')) continue
          const decoded = decodeAuditLine(Buffer.from(line))
          if ('event' in decoded && decoded.event.stage === 'ResponseComplete') yield decoded.event
        }
      }
    }
    const fired = new Map<string, string[]>()
    const annotations = new Map<string, Record<string, string>>()
    for (let i = 0; i < 50 && fired.size < sent.size; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 200))
      for (const event of completeEvents()) {
        if (!sent.has(event.auditID)) continue
        const findings: RuleFinding[] = []
        exportedRules.inspect(event, findings)
        fired.set(event.auditID, findings.map((f) => f.id).sort())
        annotations.set(event.auditID, event.annotations ?? {})
      }
    }
    for (const [auditID, { fixture, warned }] of sent) {
      t.same(warned, [...fixture.expect].sort(), `${fixture.name}: the API server warned about ${fixture.expect.join(', ') || 'nothing'}`)
      t.same(fired.get(auditID), warned, `${fixture.name}: the rules fire on its audit line exactly where the API server warned`)
      // Audit: the line itself leads back to the rule.
      const a = annotations.get(auditID) ?? {}
      for (const id of fixture.expect) t.equal(a[`auditrail-${id}/rule`], `${id} fired`, `${fixture.name}: audit annotation auditrail-${id}/rule`)
      t.same(ruleIds(a['validation.policy.admission.k8s.io/validation_failure'] ?? ''), [...fixture.expect].sort(), `${fixture.name}: the validation_failure annotation names the rules`)
    }

    // Deny: the same requests, dry run (nothing is stored), under new names.
    for (const p of policies) await must({ method: 'PATCH', path: `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/${p.binding.metadata.name}`, contentType: 'application/merge-patch+json', body: { spec: { validationActions: ['Deny', 'Audit'] } } })
    await until((r) => r.status === 422, 'deny')
    const refused = new Map<string, Fixture>()
    for (const f of FIXTURES) {
      const r = await send(f.send('-deny'), f.as, true)
      if (f.expect.length === 0) t.ok(r.status < 300, `${f.name}: admitted under Deny (${r.status})`, { body: r.text.slice(0, 300) })
      else {
        t.equal(r.status, 422, `${f.name}: refused under Deny`)
        t.same(ruleIds(r.text), [...f.expect].sort(), `${f.name}: the refusal names ${f.expect.join(', ')}`)
        refused.set(r.auditID, f)
      }
    }
    // The agent on the refusals' lines: each is a finding of the rule that refused it, marked blocked at admission.
    const blocked = new Map<string, string[]>()
    for (let i = 0; i < 50 && blocked.size < refused.size; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 200))
      for (const event of completeEvents()) {
        if (!refused.has(event.auditID)) continue
        const findings: RuleFinding[] = []
        exportedRules.inspect(event, findings)
        blocked.set(event.auditID, findings.map((f) => `${f.id}${f.details.blockedAtAdmission === 'true' ? ' blocked' : ''}`).sort())
      }
    }
    for (const [auditID, f] of refused) t.same(blocked.get(auditID), f.expect.map((id) => `${id} blocked`).sort(), `${f.name}: the agent finds ${f.expect.join(', ')}, blocked at admission`)
  })
}
