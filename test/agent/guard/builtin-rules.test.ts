// The built-in rule pack, rule by rule: for every rule an audit event that
// fires it and one close to it that must not (an excepted identity, a failed
// request, an unprivileged pod, the wrong namespace...). Events are built as
// audit.k8s.io/v1 JSON the way kube-apiserver v1.26 writes them, encoded as a
// line and decoded by decodeAuditLine, as the agent does.
import t from 'tap'
import { decodeAuditLine, type AuditEvent } from '../../../agent/audit/event.ts'
import { NetworkSet, setClusterNetworks, setKnownBadAddresses } from '../../../agent/guard/networks.ts'
import { BUILTIN_RULES_DIR, loadRuleSet, type RuleFinding } from '../../../agent/guard/rule-set.ts'
import type { Severity } from '../../../proto/wire.ts'

type Json = Record<string, unknown>

// ---------------------------------------------------------------- identities

const ALICE = 'alice@example.com' // a developer, through OIDC
const ADMIN = 'kubernetes-admin' // kubeadm's admin.conf: system:masters
const APISERVER = 'system:apiserver'
const KCM = 'system:kube-controller-manager'
const NODE = 'system:node:worker-1'
const ANON = 'system:anonymous'
const sa = (ns: string, name: string) => `system:serviceaccount:${ns}:${name}`

function userInfo(username: string): Json {
  if (username === ADMIN) return { username, groups: ['system:masters', 'system:authenticated'] }
  if (username === APISERVER) return { username, uid: '144f51e0-c491-4e2a-8ca2-0111d18873f5', groups: ['system:masters'] }
  if (username === ANON) return { username, groups: ['system:unauthenticated'] }
  if (username.startsWith('system:serviceaccount:')) {
    const [, , ns, name] = username.split(':')
    return { username, uid: `0d8f7a1e-${name}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'] }
  }
  if (username.startsWith('system:node:')) return { username, groups: ['system:nodes', 'system:authenticated'] }
  if (username.startsWith('system:bootstrap:')) return { username, groups: ['system:bootstrappers', 'system:bootstrappers:kubeadm:default-node-token', 'system:authenticated'] }
  if (username === ALICE) return { username, groups: ['oidc:developers', 'system:authenticated'] }
  return { username, groups: ['system:authenticated'] }
}

function userAgentOf(username: string): string {
  if (username.startsWith('system:node:')) return 'kubelet/v1.26.1 (linux/amd64) kubernetes/8f94681'
  if (username === APISERVER) return 'kube-apiserver/v1.26.1 (linux/amd64) kubernetes/8f94681'
  if (username === KCM || username.startsWith('system:serviceaccount:kube-system:')) return `kube-controller-manager/v1.26.1 (linux/amd64) kubernetes/8f94681/${username.split(':').pop()}`
  return 'kubectl/v1.26.1 (linux/amd64) kubernetes/8f94681'
}

// ---------------------------------------------------------------- events

let serial = 0
const nextAuditID = () => `5c0ffee0-0000-4000-8000-${(++serial).toString(16).padStart(12, '0')}`
const REASONS: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'AlreadyExists', 422: 'Invalid' }
const STREAMING = new Set(['exec', 'attach', 'portforward'])

interface Opts {
  /** A username (groups derived from it) or a whole UserInfo. Default: alice. */
  user?: string | Json
  code?: number
  stage?: string
  /** The object the request leaves behind: a create's or update's body, a patch's or get's response. */
  object?: Json
  /** A patch's body (default: a label change). */
  patch?: Json
  query?: string
  /** The URI of a non-resource request (ref ''). */
  uri?: string
  /** Top-level fields that replace the built ones (undefined removes one). */
  set?: Json
}

/**
 * An audit event. `ref` is `resource[.group][/subresource] [namespace/][name]`:
 * 'pods/exec default/web-1', 'deployments.apps prod/api', 'secrets prod/' (the
 * namespace's collection), 'secrets' (all namespaces), 'clusterroles.rbac.authorization.k8s.io system:node', '' (no object).
 */
function ev(verb: string, ref: string, o: Opts = {}): Json {
  const [what = '', where = ''] = ref.split(' ')
  let objectRef: Json | undefined
  let uri = o.uri ?? '/'
  if (what !== '') {
    const m = /^([a-z]+)(?:\.([a-z0-9.-]+))?(?:\/([a-z]+))?$/.exec(what)
    if (!m) throw new Error(`bad ref ${ref}`)
    const [, resource, group, sub] = m
    let [ns, name] = where.includes('/') ? where.split('/') : [undefined, where]
    if (resource === 'namespaces' && name) ns = name // the apiserver's RequestInfo does this
    objectRef = { resource, namespace: ns || undefined, name: name || undefined, apiGroup: group, apiVersion: 'v1', subresource: sub }
    uri = `${group ? `/apis/${group}/v1` : '/api/v1'}${ns && resource !== 'namespaces' ? `/namespaces/${ns}` : ''}/${resource}${name && (verb !== 'create' || sub) ? `/${name}` : ''}${sub ? `/${sub}` : ''}`
  }
  if (o.query) uri += `?${o.query}`
  const sub = objectRef?.subresource as string | undefined
  const code = o.code ?? (sub && STREAMING.has(sub) ? 101 : verb === 'create' ? 201 : 200)
  const user = typeof o.user === 'object' ? o.user : userInfo(o.user ?? ALICE)
  const username = String(user.username ?? '')
  const failed = code >= 400
  const status = failed ? { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: REASONS[code], code, message: `${REASONS[code]?.toLowerCase()}` } : undefined
  let requestObject: unknown
  let responseObject: unknown
  if (verb === 'create' || verb === 'update') requestObject = o.object
  if (verb === 'patch') requestObject = o.patch ?? { metadata: { labels: { 'app.kubernetes.io/version': '2' } } }
  if (!failed && o.object) responseObject = verb === 'create' || verb === 'update' || verb === 'patch' ? served(o.object) : o.object
  if (failed && (o.object || o.patch)) responseObject = status
  const event: Json = {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: o.object || o.patch ? 'RequestResponse' : 'Metadata',
    auditID: nextAuditID(),
    stage: o.stage ?? (sub && STREAMING.has(sub) ? 'ResponseStarted' : 'ResponseComplete'),
    requestURI: uri,
    verb,
    user,
    sourceIPs: ['192.168.10.21'],
    userAgent: userAgentOf(username),
    objectRef,
    responseStatus: failed ? { metadata: {}, status: 'Failure', message: `${REASONS[code]?.toLowerCase()}`, reason: REASONS[code], details: {}, code } : { metadata: {}, code },
    requestObject,
    responseObject,
    requestReceivedTimestamp: '2026-11-25T10:15:02.118203Z',
    stageTimestamp: '2026-11-25T10:15:02.131377Z',
    annotations: { 'authorization.k8s.io/decision': code === 403 ? 'forbid' : 'allow', 'authorization.k8s.io/reason': '' },
  }
  return { ...event, ...o.set }
}

/** What the apiserver sends back: the object with its server-set fields. */
function served(object: Json): Json {
  const metadata = (object.metadata ?? {}) as Json
  return { ...object, metadata: { ...metadata, uid: '7e1b2f0c-3c9a-4f64-9d2e-2a5d0f8c1b11', resourceVersion: '48213', creationTimestamp: '2026-11-25T10:15:02Z' } }
}

/** An event on an object, its objectRef taken from the object's apiVersion, kind and metadata. */
function write(verb: string, object: Json, o: Opts = {}): Json {
  const [group, version] = String(object.apiVersion).includes('/') ? String(object.apiVersion).split('/') : ['', object.apiVersion]
  const kind = String(object.kind).toLowerCase()
  const resource = kind.endsWith('y') ? `${kind.slice(0, -1)}ies` : kind.endsWith('s') ? `${kind}es` : `${kind}s`
  const meta = object.metadata as { name?: string; namespace?: string }
  const e = ev(verb, `${resource}${group ? `.${group}` : ''} ${meta.namespace ? `${meta.namespace}/` : ''}${meta.name ?? ''}`, { ...o, object })
  ;(e.objectRef as Json).apiVersion = version
  return e
}

// ---------------------------------------------------------------- objects

const metadata = (where: string): Json => {
  const [ns, name] = where.includes('/') ? where.split('/') : [undefined, where]
  return { name, namespace: ns }
}
const container = (name: string, more: Json = {}): Json => ({ name, image: 'docker.io/library/nginx:1.25.3', ports: [{ containerPort: 80, protocol: 'TCP' }], resources: {}, ...more })
const podSpec = (more: Json = {}): Json => ({ containers: [container('web')], restartPolicy: 'Always', serviceAccountName: 'default', ...more })
const pod = (where: string, more?: Json): Json => ({ apiVersion: 'v1', kind: 'Pod', metadata: metadata(where), spec: podSpec(more) })
const PRIVILEGED = { securityContext: { privileged: true } }
/** A pod as a controller creates it: generateName, and its workload as controller owner. */
const ownedPod = (where: string, ownerKind: string, ownerName: string, more?: Json): Json => {
  const [namespace, generateName] = where.split('/')
  const ownerReferences = [{ apiVersion: 'apps/v1', kind: ownerKind, name: ownerName, uid: '3b9e7c1a-5d2f-4e8b-9a61-0c4d2e7f8a90', controller: true, blockOwnerDeletion: true }]
  return { apiVersion: 'v1', kind: 'Pod', metadata: { generateName, namespace, ownerReferences }, spec: podSpec(more) }
}

function workload(kind: 'Deployment' | 'DaemonSet' | 'StatefulSet' | 'ReplicaSet' | 'Job' | 'CronJob', where: string, more?: Json): Json {
  const meta = metadata(where)
  const template = { metadata: { labels: { app: meta.name } }, spec: podSpec(more) }
  if (kind === 'CronJob') return { apiVersion: 'batch/v1', kind, metadata: meta, spec: { schedule: '0 3 * * *', jobTemplate: { spec: { template: { ...template, spec: podSpec({ restartPolicy: 'OnFailure', ...more }) } } } } }
  if (kind === 'Job') return { apiVersion: 'batch/v1', kind, metadata: meta, spec: { backoffLimit: 2, template: { ...template, spec: podSpec({ restartPolicy: 'Never', ...more }) } } }
  return { apiVersion: 'apps/v1', kind, metadata: meta, spec: { replicas: 2, selector: { matchLabels: { app: meta.name } }, template } }
}

const RBAC = 'rbac.authorization.k8s.io'
const grant = (resources: string[], verbs: string[], apiGroups = ['']): Json => ({ apiGroups, resources, verbs })
const clusterRole = (name: string, rules: Json[]): Json => ({ apiVersion: `${RBAC}/v1`, kind: 'ClusterRole', metadata: { name }, rules })
const role = (where: string, rules: Json[]): Json => ({ apiVersion: `${RBAC}/v1`, kind: 'Role', metadata: metadata(where), rules })
const user = (name: string): Json => ({ kind: 'User', apiGroup: RBAC, name })
const serviceAccount = (ns: string, name: string): Json => ({ kind: 'ServiceAccount', name, namespace: ns })
function binding(where: string, roleRef: string, subjects: Json[]): Json {
  const meta = metadata(where)
  const [refKind, refName] = roleRef.split(' ') as [string, string]
  return { apiVersion: `${RBAC}/v1`, kind: meta.namespace ? 'RoleBinding' : 'ClusterRoleBinding', metadata: meta, roleRef: { apiGroup: RBAC, kind: refKind, name: refName }, subjects }
}

const service = (where: string, type: string): Json => ({ apiVersion: 'v1', kind: 'Service', metadata: metadata(where), spec: { type, selector: { app: 'web' }, ports: [{ port: 443, targetPort: 8443, protocol: 'TCP' }] } })
const ingress = (where: string, tls: boolean): Json => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'Ingress',
  metadata: metadata(where),
  spec: {
    ingressClassName: 'nginx',
    rules: [{ host: 'shop.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } }],
    ...(tls ? { tls: [{ hosts: ['shop.example.com'], secretName: 'shop-tls' }] } : {}),
  },
})
const csr = (name: string, conditions: Json[] = []): Json => ({
  apiVersion: 'certificates.k8s.io/v1',
  kind: 'CertificateSigningRequest',
  metadata: { name },
  spec: { request: 'LS0tLS1CRUdJTi...', signerName: 'kubernetes.io/kube-apiserver-client', usages: ['client auth'], username: ALICE },
  status: { conditions },
})
const approved = { type: 'Approved', status: 'True', reason: 'KubectlApprove', message: 'This CSR was approved by kubectl certificate approve.' }
const webhook = (kind: 'ValidatingWebhookConfiguration' | 'MutatingWebhookConfiguration', name: string): Json => ({
  apiVersion: 'admissionregistration.k8s.io/v1',
  kind,
  metadata: { name },
  webhooks: [{ name: `${name}.example.com`, clientConfig: { service: { name, namespace: 'policy', path: '/validate' } }, rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }], sideEffects: 'None', admissionReviewVersions: ['v1'] }],
})
const configMap = (where: string, data: Json = { 'app.yaml': 'level: info' }): Json => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: metadata(where), data })

// ---------------------------------------------------------------- the table

interface Case {
  rule: string
  fires: boolean
  why: string
  event: Json
  /** For some firing cases: the finding's severity and rendered message. */
  expect?: { severity: Severity; message: string }
}
const fires = (rule: string, why: string, event: Json, expect?: Case['expect']): Case => ({ rule, fires: true, why, event, expect })
const quiet = (rule: string, why: string, event: Json): Case => ({ rule, fires: false, why, event })

const cases: Case[] = [
  // RBAC
  fires('rbac-object-changed', 'a person creates a ClusterRoleBinding', write('create', binding('readers', 'ClusterRole view', [user('bob@example.com')])), { severity: 'low', message: `${ALICE} did create on clusterrolebindings readers` }),
  fires('rbac-object-changed', 'a Role is deleted', ev('delete', `roles.${RBAC} prod/deployer`)),
  quiet('rbac-object-changed', 'the apiserver reconciling bootstrap roles', write('update', clusterRole('admin', [grant(['pods'], ['get'])]), { user: APISERVER })),
  quiet('rbac-object-changed', 'the same create, refused', write('create', binding('readers', 'ClusterRole view', [user('bob@example.com')]), { code: 403 })),
  quiet('rbac-object-changed', 'reading a role', ev('get', `clusterroles.${RBAC} admin`)),

  fires('binding-to-cluster-admin', 'a ClusterRoleBinding to cluster-admin', write('create', binding('ci-admin', 'ClusterRole cluster-admin', [serviceAccount('ci', 'deployer'), user('bob@example.com')])), { severity: 'critical', message: `${ALICE} bound ServiceAccount deployer, User bob@example.com to cluster-admin (clusterrolebindings ci-admin)` }),
  quiet('binding-to-cluster-admin', 'a RoleBinding to cluster-admin: rolebinding-to-cluster-admin\'s', write('create', binding('prod/ops-admin', 'ClusterRole cluster-admin', [user('bob@example.com')]))),
  fires('rolebinding-to-cluster-admin', 'a RoleBinding to cluster-admin', write('create', binding('prod/ops-admin', 'ClusterRole cluster-admin', [user('bob@example.com')])), { severity: 'high', message: `${ALICE} gave User bob@example.com full control of namespace prod (RoleBinding ops-admin to cluster-admin)` }),
  fires('rolebinding-to-cluster-admin', 'a patch adding a service account to it', write('patch', binding('prod/ops-admin', 'ClusterRole cluster-admin', [user('bob@example.com'), serviceAccount('ci', 'deployer')]), { patch: { subjects: [user('bob@example.com'), serviceAccount('ci', 'deployer')] } })),
  quiet('rolebinding-to-cluster-admin', 'a ClusterRoleBinding to cluster-admin: binding-to-cluster-admin\'s', write('create', binding('ci-admin', 'ClusterRole cluster-admin', [serviceAccount('ci', 'deployer')]))),
  quiet('rolebinding-to-cluster-admin', 'a RoleBinding to admin', write('create', binding('prod/ops', 'ClusterRole admin', [user('bob@example.com')]))),
  quiet('rolebinding-to-cluster-admin', 'the RoleBinding refused', write('create', binding('prod/ops-admin', 'ClusterRole cluster-admin', [user('bob@example.com')]), { code: 403 })),
  fires('binding-to-cluster-admin', 'a patch adding a subject: the patch body has no roleRef, the response (object) has', write('patch', binding('ci-admin', 'ClusterRole cluster-admin', [user('mallory@example.com')]), { patch: { subjects: [user('mallory@example.com')] } })),
  quiet('binding-to-cluster-admin', 'a binding to view', write('create', binding('ci-view', 'ClusterRole view', [serviceAccount('ci', 'deployer')]))),
  quiet('binding-to-cluster-admin', 'the apiserver reconciling its bootstrap binding', write('update', binding('cluster-admin', 'ClusterRole cluster-admin', [{ kind: 'Group', apiGroup: RBAC, name: 'system:masters' }]), { user: APISERVER })),
  quiet('binding-to-cluster-admin', 'the same binding, refused', write('create', binding('ci-admin', 'ClusterRole cluster-admin', [serviceAccount('ci', 'deployer')]), { code: 403 })),

  fires('binding-to-system-role', 'a RoleBinding to system:node', write('create', binding('prod/sneaky', 'ClusterRole system:node', [serviceAccount('prod', 'web')])), { severity: 'high', message: `${ALICE} bound ServiceAccount web to system:node` }),
  quiet('binding-to-system-role', 'a RoleBinding to a non-system role (edit)', write('create', binding('prod/devs', 'ClusterRole edit', [user('bob@example.com')]))),
  quiet('binding-to-system-role', 'a kube-system controller binding a system role', write('create', binding('system:controller:bootstrap-signer', 'ClusterRole system:controller:bootstrap-signer', [serviceAccount('kube-system', 'bootstrap-signer')]), { user: sa('kube-system', 'clusterrole-aggregation-controller') })),

  fires('role-with-wildcard', 'a ClusterRole with * everything', write('create', clusterRole('god', [grant(['*'], ['*'], ['*'])])), { severity: 'high', message: `${ALICE} gave clusterroles god wildcard rights` }),
  fires('role-with-wildcard', 'a Role with * verbs on pods only', write('update', role('prod/pod-master', [grant(['pods'], ['*'])]))),
  quiet('role-with-wildcard', 'explicit verbs and resources', write('create', clusterRole('pod-reader', [grant(['pods', 'pods/log'], ['get', 'list', 'watch'])]))),
  quiet('role-with-wildcard', 'the same role, rejected as invalid', write('create', clusterRole('god', [grant(['*'], ['*'], ['*'])]), { code: 422 })),

  fires('role-with-sensitive-grant', 'pods/exec', write('create', clusterRole('debugger', [grant(['pods'], ['get']), grant(['pods/exec'], ['create'])])), { severity: 'high', message: `${ALICE} did create on clusterroles debugger granting pods/exec create` }),
  // Escalation paths: each right leads to others, on create and on the update or patch that adds it.
  fires('role-with-sensitive-grant', 'nodes/proxy (every kubelet API)', write('create', clusterRole('node-metrics', [grant(['nodes', 'nodes/proxy'], ['get', 'list'])])), { severity: 'high', message: `${ALICE} did create on clusterroles node-metrics granting nodes/proxy get/list` }),
  fires('role-with-sensitive-grant', 'an update that adds escalate and bind', write('update', clusterRole('rbac-manager', [grant(['roles', 'rolebindings'], ['get', 'list']), grant(['clusterroles'], ['escalate', 'bind'], [RBAC])])), { severity: 'high', message: `${ALICE} did update on clusterroles rbac-manager granting escalate clusterroles, bind clusterroles` }),
  fires('role-with-sensitive-grant', 'a Role patched to create service account tokens', write('patch', role('ci/token-minter', [grant(['serviceaccounts/token'], ['create'])]), { patch: { rules: [grant(['serviceaccounts/token'], ['create'])] } }), { severity: 'high', message: `${ALICE} did patch on roles token-minter granting serviceaccounts/token create` }),
  fires('role-with-sensitive-grant', 'approving certificate signing requests', write('create', clusterRole('csr-approver', [grant(['certificatesigningrequests/approval'], ['update'], ['certificates.k8s.io'])]))),
  fires('role-with-sensitive-grant', 'secrets with a * verb', write('update', role('prod/secret-admin', [grant(['secrets'], ['*'])]))),
  quiet('role-with-sensitive-grant', 'nodes and their status, not nodes/proxy', write('create', clusterRole('node-viewer', [grant(['nodes', 'nodes/status'], ['get', 'list', 'watch'])]))),
  quiet('role-with-sensitive-grant', 'reading service accounts, not minting their tokens', write('update', clusterRole('sa-viewer', [grant(['serviceaccounts', 'serviceaccounts/token'], ['get', 'list'])]))),
  quiet('role-with-sensitive-grant', 'reading CSRs, not approving them', write('patch', clusterRole('csr-viewer', [grant(['certificatesigningrequests', 'certificatesigningrequests/approval'], ['get', 'list', 'watch'], ['certificates.k8s.io'])]))),
  quiet('role-with-sensitive-grant', 'the same nodes/proxy grant, refused', write('create', clusterRole('node-metrics', [grant(['nodes/proxy'], ['get'])]), { code: 403 })),
  fires('role-with-sensitive-grant', 'reading secrets', write('create', role('prod/secret-reader', [grant(['secrets'], ['get', 'list'])]))),
  fires('role-with-sensitive-grant', 'impersonate', write('patch', clusterRole('impersonator', [grant(['users', 'groups'], ['impersonate'])]))),
  quiet('role-with-sensitive-grant', 'reading config maps', write('create', role('prod/config-reader', [grant(['configmaps'], ['get', 'list'])]))),
  quiet('role-with-sensitive-grant', 'creating secrets without reading them', write('create', role('prod/secret-writer', [grant(['secrets'], ['create'])]))),

  fires('role-with-write-access', 'a Role that may update deployments', write('create', role('prod/deployer', [grant(['deployments'], ['get', 'update', 'patch'], ['apps'])])), { severity: 'medium', message: `${ALICE} created roles deployer with write rights` }),
  quiet('role-with-write-access', 'a read-only Role', write('create', role('prod/viewer', [grant(['deployments'], ['get', 'list', 'watch'], ['apps'])]))),
  quiet('role-with-write-access', 'an update (not a create) of a write Role', write('update', role('prod/deployer', [grant(['deployments'], ['update'], ['apps'])]))),

  fires('system-role-changed', 'a patch of system:node-problem-detector', write('patch', clusterRole('system:node-problem-detector', [grant(['*'], ['*'], ['*'])])), { severity: 'high', message: `${ALICE} did patch on the system clusterroles system:node-problem-detector` }),
  fires('system-role-changed', 'a delete of system:kube-aggregator', ev('delete', `clusterroles.${RBAC} system:kube-aggregator`)),
  quiet('system-role-changed', 'a CoreDNS upgrade: system:coredns updated to read endpointslices', write('update', clusterRole('system:coredns', [grant(['endpoints', 'services', 'pods', 'namespaces'], ['list', 'watch']), grant(['endpointslices'], ['list', 'watch'], ['discovery.k8s.io'])]))),
  fires('system-role-changed', 'system:coredns updated to read secrets', write('update', clusterRole('system:coredns', [grant(['endpoints', 'services', 'pods', 'namespaces'], ['list', 'watch']), grant(['secrets'], ['get', 'list'])]))),
  fires('system-role-changed', 'system:coredns updated to write services', write('update', clusterRole('system:coredns', [grant(['endpoints', 'services', 'pods', 'namespaces'], ['list', 'watch', 'update'])]))),
  quiet('system-role-changed', 'system:coredns merge-patched at Request level: the patch replaces the whole rules list, read-only', write('patch', clusterRole('system:coredns', [grant(['services'], ['list'])]), { patch: { rules: [grant(['services'], ['list'])] }, set: { level: 'Request', responseObject: undefined } })),
  fires('system-role-changed', 'system:coredns JSON-patched at Request level: the operations alone cannot show the result is read-only', write('patch', clusterRole('system:coredns', [grant(['services'], ['list'])]), { patch: [{ op: 'add', path: '/rules/-', value: grant(['services'], ['list']) }] as unknown as Json, set: { level: 'Request', responseObject: undefined } })),
  fires('system-role-changed', 'the same read-only rules on system:node: not an allowlisted role', write('update', clusterRole('system:node', [grant(['endpoints', 'services'], ['list', 'watch'])]))),
  quiet('system-role-changed', 'the apiserver reconciling it', write('update', clusterRole('system:node-problem-detector', [grant(['nodes'], ['get'])]), { user: APISERVER })),
  quiet('system-role-changed', 'a delete of a non-system role', ev('delete', `clusterroles.${RBAC} some-reader`)),
  quiet('system-role-changed', 'the same delete, refused', ev('delete', `clusterroles.${RBAC} system:kube-aggregator`, { code: 403 })),

  // Workloads
  fires('pod-created', 'a pod is created', write('create', pod('default/web-1')), { severity: 'info', message: `${ALICE} created pod default/web-1` }),
  fires('pod-created', 'the ReplicaSet controller creates a pod from generateName (objectRef has no name, the response has)', ev('create', 'pods default/', { user: sa('kube-system', 'replicaset-controller'), object: { ...pod('default/x'), metadata: { generateName: 'web-7d4b9c-', namespace: 'default', labels: { app: 'web' } } }, set: { responseObject: served(pod('default/web-7d4b9c-x2x9k')) } })),
  quiet('pod-created', 'the create is refused', write('create', pod('default/web-1'), { code: 403 })),
  quiet('pod-created', 'a pod is read', ev('get', 'pods default/web-1')),

  fires('pod-deleted', 'a pod is deleted', ev('delete', 'pods default/web-1'), { severity: 'info', message: `${ALICE} deleted pod default/web-1` }),
  quiet('pod-deleted', 'the pod was not there', ev('delete', 'pods default/web-1', { code: 404 })),

  fires('privileged-container', 'a privileged container', write('create', pod('default/web-1', { containers: [container('web', PRIVILEGED)] })), { severity: 'high', message: `${ALICE} did create on pods default/web-1 with privileged container web` }),
  fires('privileged-container', 'a privileged init container', write('create', pod('default/web-1', { initContainers: [container('setup', PRIVILEGED)] })), { severity: 'high', message: `${ALICE} did create on pods default/web-1 with privileged container setup` }),
  fires('privileged-container', 'a privileged ephemeral container, seen in the response to a label patch of the pod', write('patch', pod('default/web-1', { ephemeralContainers: [container('debugger-x7k2p', { image: 'docker.io/library/busybox:1.36', ...PRIVILEGED })] }))),
  fires('privileged-container', 'the second container privileged, the first without securityContext', write('create', pod('default/web-1', { containers: [container('web'), container('sidecar', PRIVILEGED)] }))),
  fires('privileged-container', 'inside a Deployment', write('create', workload('Deployment', 'prod/api', { containers: [container('api', PRIVILEGED)] })), { severity: 'high', message: `${ALICE} did create on deployments prod/api with privileged container api` }),
  fires('privileged-container', 'inside a DaemonSet', write('update', workload('DaemonSet', 'monitoring/node-agent', { containers: [container('agent', PRIVILEGED)] }))),
  // CronJobs: the change itself is low; the pod-spec rules judge its job template like a pod's.
  fires('cronjob-changed', 'a person creates a CronJob', write('create', workload('CronJob', 'ops/cleanup')), { severity: 'low', message: `${ALICE} did create on cronjob ops/cleanup` }),
  fires('cronjob-changed', 'a service account patches one (a CI pipeline, or a stolen token)', write('patch', workload('CronJob', 'ops/cleanup'), { user: sa('ci', 'deployer'), patch: { spec: { schedule: '*/1 * * * *' } } })),
  quiet('cronjob-changed', 'the CronJob controller updating its status', ev('update', 'cronjobs.batch/status ops/cleanup', { user: sa('kube-system', 'cronjob-controller'), object: workload('CronJob', 'ops/cleanup') })),
  quiet('cronjob-changed', 'a Job (what a CronJob starts), not a CronJob', write('create', workload('Job', 'ops/cleanup-28349880'), { user: sa('kube-system', 'cronjob-controller') })),
  quiet('cronjob-changed', 'creating a CronJob, refused', write('create', workload('CronJob', 'ops/cleanup'), { code: 403 })),
  fires('sensitive-host-path-mount', 'a CronJob mounting the node\'s root', write('create', workload('CronJob', 'ops/backup', { volumes: [{ name: 'host', hostPath: { path: '/', type: 'Directory' } }] })), { severity: 'high', message: `${ALICE} did create on cronjobs ops/backup mounting host paths /` }),
  fires('privileged-container', 'a CronJob patched at Request level: the patch body has no kind, its job template is still read', write('patch', workload('CronJob', 'ops/cleanup'), { patch: { spec: { jobTemplate: { spec: { template: { spec: { containers: [container('cleanup', PRIVILEGED)] } } } } } }, set: { level: 'Request', responseObject: undefined } })),
  fires('ephemeral-container-with-privileges', 'kubectl debug --profile=sysadmin logged at Request level: the kindless patch body is read as a pod spec', ev('patch', 'pods/ephemeralcontainers default/web-1', { patch: { spec: { ephemeralContainers: [container('debugger-x7k2p', { image: 'busybox', ...PRIVILEGED })] } }, set: { level: 'Request' } })),
  quiet('privileged-container', 'a kindless patch of a CronJob\'s schedule only', write('patch', workload('CronJob', 'ops/cleanup', { containers: [container('cleanup', PRIVILEGED)] }), { patch: { spec: { schedule: '0 4 * * *' } }, set: { level: 'Request', responseObject: undefined } })),
  fires('privileged-container', 'inside a CronJob (jobTemplate)', write('create', workload('CronJob', 'ops/cleanup', { containers: [container('cleanup', PRIVILEGED)] }))),
  quiet('privileged-container', 'the replicaset controller creating a privileged pod of a person\'s Deployment', ev('create', 'pods prod/', { user: sa('kube-system', 'replicaset-controller'), object: ownedPod('prod/api-7d9f8c6b5-', 'ReplicaSet', 'api-7d9f8c6b5', { containers: [container('api', PRIVILEGED)] }) })),
  quiet('privileged-container', 'the controller manager (without per-controller credentials) doing the same', ev('create', 'pods prod/', { user: KCM, object: ownedPod('prod/api-7d9f8c6b5-', 'ReplicaSet', 'api-7d9f8c6b5', { containers: [container('api', PRIVILEGED)] }) })),
  fires('privileged-container', 'a controller\'s token creating a privileged pod no workload owns', ev('create', 'pods prod/', { user: sa('kube-system', 'replicaset-controller'), object: pod('prod/miner', { containers: [container('miner', PRIVILEGED)] }) })),
  fires('privileged-container', 'a kube-system service account that is no controller, with a forged owner', ev('create', 'pods prod/', { user: sa('kube-system', 'coredns'), object: ownedPod('prod/api-7d9f8c6b5-', 'ReplicaSet', 'api-7d9f8c6b5', { containers: [container('api', PRIVILEGED)] }) })),
  fires('privileged-container', 'a person creating a pod that names a controller owner', ev('create', 'pods prod/', { object: ownedPod('prod/api-7d9f8c6b5-', 'ReplicaSet', 'api-7d9f8c6b5', { containers: [container('api', PRIVILEGED)] }) })),
  quiet('host-network', 'the daemonset controller creating a hostNetwork pod of a person\'s DaemonSet', ev('create', 'pods monitoring/', { user: sa('kube-system', 'daemon-set-controller'), object: ownedPod('monitoring/node-agent-', 'DaemonSet', 'node-agent', { hostNetwork: true }) })),
  quiet('host-pid', 'the daemonset controller creating a hostPID pod', ev('create', 'pods monitoring/', { user: sa('kube-system', 'daemon-set-controller'), object: ownedPod('monitoring/node-agent-', 'DaemonSet', 'node-agent', { hostPID: true }) })),
  quiet('sensitive-host-path-mount', 'the daemonset controller creating a pod mounting /var/lib/kubelet', ev('create', 'pods monitoring/', { user: sa('kube-system', 'daemon-set-controller'), object: ownedPod('monitoring/node-agent-', 'DaemonSet', 'node-agent', { volumes: [{ name: 'kubelet', hostPath: { path: '/var/lib/kubelet' } }] }) })),
  fires('controller-made-pod-outside-baseline', 'the replicaset controller\'s privileged pod: recorded at medium', ev('create', 'pods prod/', { user: sa('kube-system', 'replicaset-controller'), object: ownedPod('prod/api-7d9f8c6b5-', 'ReplicaSet', 'api-7d9f8c6b5', { containers: [container('api', PRIVILEGED)] }) }), { severity: 'medium', message: `${sa('kube-system', 'replicaset-controller')} created pods prod/api-7d9f8c6b5-* for ReplicaSet/api-7d9f8c6b5 outside the baseline Pod Security profile` }),
  fires('controller-made-pod-outside-baseline', 'the daemonset controller\'s hostNetwork pod', ev('create', 'pods monitoring/', { user: sa('kube-system', 'daemon-set-controller'), object: ownedPod('monitoring/node-agent-', 'DaemonSet', 'node-agent', { hostNetwork: true }) })),
  fires('controller-made-pod-outside-baseline', 'the controller manager\'s pod adding SYS_ADMIN', ev('create', 'pods batch/', { user: KCM, object: ownedPod('batch/report-28371-', 'Job', 'report-28371', { containers: [container('report', { securityContext: { capabilities: { add: ['SYS_ADMIN'] } } })] }) })),
  quiet('controller-made-pod-outside-baseline', 'an ordinary pod of a Deployment', ev('create', 'pods prod/', { user: sa('kube-system', 'replicaset-controller'), object: ownedPod('prod/api-7d9f8c6b5-', 'ReplicaSet', 'api-7d9f8c6b5') })),
  quiet('controller-made-pod-outside-baseline', 'a pod adding NET_BIND_SERVICE, which the baseline allows', ev('create', 'pods prod/', { user: sa('kube-system', 'replicaset-controller'), object: ownedPod('prod/api-7d9f8c6b5-', 'ReplicaSet', 'api-7d9f8c6b5', { containers: [container('api', { securityContext: { capabilities: { add: ['NET_BIND_SERVICE'] } } })] }) })),
  quiet('controller-made-pod-outside-baseline', 'a controller\'s token making a bare privileged pod: privileged-container\'s (high)', ev('create', 'pods prod/', { user: sa('kube-system', 'replicaset-controller'), object: pod('prod/miner', { containers: [container('miner', PRIVILEGED)] }) })),
  quiet('controller-made-pod-outside-baseline', 'a person\'s pod naming an owner', ev('create', 'pods prod/', { object: ownedPod('prod/api-7d9f8c6b5-', 'ReplicaSet', 'api-7d9f8c6b5', { containers: [container('api', PRIVILEGED)] }) })),
  fires('host-network', 'the person\'s DaemonSet itself', write('create', workload('DaemonSet', 'monitoring/node-agent', { hostNetwork: true }))),
  quiet('privileged-container', 'privileged: false', write('create', pod('default/web-1', { containers: [container('web', { securityContext: { privileged: false, runAsNonRoot: true } })] }))),
  quiet('privileged-container', 'an unprivileged Deployment', write('create', workload('Deployment', 'prod/api'))),
  quiet('privileged-container', 'the privileged pod, refused by admission', write('create', pod('default/web-1', { containers: [container('web', PRIVILEGED)] }), { code: 403 })),

  fires('dangerous-capabilities-added', 'NET_ADMIN', write('create', pod('default/vpn', { containers: [container('vpn', { securityContext: { capabilities: { add: ['NET_ADMIN'] } } })] })), { severity: 'high', message: `${ALICE} did create on pods default/vpn adding capabilities` }),
  fires('dangerous-capabilities-added', 'cap_sys_admin in a StatefulSet, any case, CAP_ prefix', write('create', workload('StatefulSet', 'db/pg', { containers: [container('pg', { securityContext: { capabilities: { add: ['cap_sys_admin'] } } })] }))),
  quiet('dangerous-capabilities-added', 'a harmless capability', write('create', pod('default/web-1', { containers: [container('web', { securityContext: { capabilities: { add: ['NET_BIND_SERVICE'] } } })] }))),
  quiet('dangerous-capabilities-added', 'ALL dropped, not added', write('create', pod('default/web-1', { containers: [container('web', { securityContext: { capabilities: { drop: ['ALL'] } } })] }))),

  fires('sensitive-host-path-mount', 'the node root', write('create', pod('default/web-1', { volumes: [{ name: 'host', hostPath: { path: '/' } }] })), { severity: 'high', message: `${ALICE} did create on pods default/web-1 mounting host paths /` }),
  fires('sensitive-host-path-mount', 'the docker socket in a DaemonSet', write('create', workload('DaemonSet', 'ci/builder', { volumes: [{ name: 'docker', hostPath: { path: '/var/run/docker.sock', type: 'Socket' } }] }))),
  fires('sensitive-host-path-mount', '/etc/kubernetes/pki in a Job', write('create', workload('Job', 'ops/backup', { volumes: [{ name: 'data', emptyDir: {} }, { name: 'pki', hostPath: { path: '/etc/kubernetes/pki' } }] }))),
  quiet('sensitive-host-path-mount', 'a host path that is not sensitive', write('create', pod('default/web-1', { volumes: [{ name: 'logs', hostPath: { path: '/var/log/web' } }] }))),
  quiet('sensitive-host-path-mount', '/etcd-backup only looks like /etc', write('create', pod('default/web-1', { volumes: [{ name: 'bk', hostPath: { path: '/etcd-backup' } }] }))),
  quiet('sensitive-host-path-mount', 'no host path at all', write('create', pod('default/web-1', { volumes: [{ name: 'cfg', configMap: { name: 'web' } }] }))),

  fires('host-network', 'hostNetwork in a pod', write('create', pod('default/sniffer', { hostNetwork: true })), { severity: 'high', message: `${ALICE} did create on pods default/sniffer with hostNetwork` }),
  fires('host-network', 'hostNetwork in a DaemonSet', write('create', workload('DaemonSet', 'net/proxy', { hostNetwork: true }))),
  quiet('host-network', 'a kubelet creating a static pod\'s mirror pod', write('create', pod('kube-system/kube-apiserver-cp-1', { hostNetwork: true }), { user: 'system:node:cp-1' })),
  quiet('host-network', 'hostNetwork: false', write('create', pod('default/web-1', { hostNetwork: false }))),

  fires('host-pid', 'hostPID', write('create', pod('default/debug', { hostPID: true })), { severity: 'high', message: `${ALICE} did create on pods default/debug with hostPID` }),
  quiet('host-pid', 'no hostPID', write('create', pod('default/debug'))),

  fires('host-ipc', 'hostIPC in a CronJob', write('create', workload('CronJob', 'ops/shm-dump', { hostIPC: true })), { severity: 'high', message: `${ALICE} did create on cronjobs ops/shm-dump with hostIPC` }),
  quiet('host-ipc', 'hostIPC: false in a Job', write('create', workload('Job', 'ops/shm-dump', { hostIPC: false }))),

  fires('root-with-privilege-escalation', 'runAsUser 0 on the container', write('create', pod('default/web-1', { containers: [container('web', { securityContext: { runAsUser: 0 } })] })), { severity: 'medium', message: `${ALICE} did create on pods default/web-1 running as root with privilege escalation allowed` }),
  fires('root-with-privilege-escalation', 'runAsUser 0 on the pod, inherited', write('create', workload('Deployment', 'prod/api', { securityContext: { runAsUser: 0 } }))),
  quiet('root-with-privilege-escalation', 'root, but allowPrivilegeEscalation: false', write('create', pod('default/web-1', { containers: [container('web', { securityContext: { runAsUser: 0, allowPrivilegeEscalation: false } })] }))),
  quiet('root-with-privilege-escalation', 'the pod says root, the container overrides with 1000', write('create', pod('default/web-1', { securityContext: { runAsUser: 0 }, containers: [container('web', { securityContext: { runAsUser: 1000 } })] }))),
  quiet('root-with-privilege-escalation', 'no runAsUser anywhere', write('create', pod('default/web-1'))),

  fires('workload-changed', 'a Deployment created by a person', write('create', workload('Deployment', 'prod/api')), { severity: 'low', message: `${ALICE} did create on deployments prod/api` }),
  fires('workload-changed', 'a DaemonSet deleted', ev('delete', 'daemonsets.apps monitoring/node-exporter')),
  quiet('workload-changed', 'the deployment controller updating its Deployment', write('update', workload('Deployment', 'prod/api'), { user: sa('kube-system', 'deployment-controller') })),
  quiet('workload-changed', 'a ReplicaSet (not in the list)', write('create', workload('ReplicaSet', 'prod/api-7d4b9c'))),
  quiet('workload-changed', 'the create, refused', write('create', workload('Deployment', 'prod/api'), { code: 403 })),

  fires('workload-in-system-namespace', 'a person creates a DaemonSet in kube-system', write('create', workload('DaemonSet', 'kube-system/kube-proxy-2')), { severity: 'high', message: `${ALICE} created daemonsets kube-system/kube-proxy-2` }),
  fires('workload-in-system-namespace', 'a pod in kube-public', write('create', pod('kube-public/web-1'))),
  quiet('workload-in-system-namespace', 'the DaemonSet controller creating its pod in kube-system', write('create', pod('kube-system/kube-proxy-x8k2z', { containers: [container('kube-proxy', { image: 'registry.k8s.io/kube-proxy:v1.26.1' })] }), { user: sa('kube-system', 'daemon-set-controller') })),
  quiet('workload-in-system-namespace', 'the same DaemonSet in default', write('create', workload('DaemonSet', 'default/kube-proxy-2'))),

  fires('pod-in-system-namespace-untrusted-image', 'a controller creates a kube-system pod from Docker Hub', write('create', pod('kube-system/miner-x8k2z', { containers: [container('miner', { image: 'docker.io/xmrig/xmrig:6.21' })] }), { user: sa('kube-system', 'replicaset-controller') }), { severity: 'medium', message: `${sa('kube-system', 'replicaset-controller')} created pod kube-system/miner-x8k2z with images docker.io/xmrig/xmrig:6.21` }),
  fires('pod-in-system-namespace-untrusted-image', 'a registry that only starts like registry.k8s.io', write('create', pod('kube-system/kube-proxy-x8k2z', { containers: [container('kube-proxy', { image: 'registry.k8s.io.mirror.example/kube-proxy:v1.26.1' })] }), { user: sa('kube-system', 'daemon-set-controller') })),
  quiet('pod-in-system-namespace-untrusted-image', 'an image from registry.k8s.io', write('create', pod('kube-system/coredns-787d4945fb-l85r5', { containers: [container('coredns', { image: 'registry.k8s.io/coredns/coredns:v1.9.3' })] }), { user: sa('kube-system', 'replicaset-controller') })),
  quiet('pod-in-system-namespace-untrusted-image', 'a kubelet\'s mirror pod of a static pod', write('create', pod('kube-system/etcd-cp-1', { containers: [container('etcd', { image: 'quay.io/coreos/etcd:v3.5.6' })] }), { user: 'system:node:cp-1' })),
  quiet('pod-in-system-namespace-untrusted-image', 'the same image in default', write('create', pod('default/miner-x8k2z', { containers: [container('miner', { image: 'docker.io/xmrig/xmrig:6.21' })] }), { user: sa('kube-system', 'replicaset-controller') })),

  fires('serviceaccount-in-system-namespace', 'a person creates a service account in kube-system', write('create', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'helper', namespace: 'kube-system' } }), { severity: 'medium', message: `${ALICE} created service account kube-system/helper` }),
  quiet('serviceaccount-in-system-namespace', 'a kube-system controller creating one', write('create', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'helper', namespace: 'kube-system' } }, { user: sa('kube-system', 'service-account-controller') })),
  quiet('serviceaccount-in-system-namespace', 'a person creating one in default', write('create', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'helper', namespace: 'default' } })),

  fires('ephemeral-container-added', 'kubectl debug: a patch of pods/ephemeralcontainers', ev('patch', 'pods/ephemeralcontainers default/web-1', { patch: { spec: { ephemeralContainers: [container('debugger-x7k2p', { image: 'busybox', stdin: true, tty: true })] } }, object: pod('default/web-1', { ephemeralContainers: [container('debugger-x7k2p', { image: 'busybox' })] }) }), { severity: 'high', message: `${ALICE} added an ephemeral container to pod default/web-1` }),
  quiet('ephemeral-container-added', 'the patch, refused', ev('patch', 'pods/ephemeralcontainers default/web-1', { code: 403 })),
  quiet('ephemeral-container-added', 'reading the subresource', ev('get', 'pods/ephemeralcontainers default/web-1')),

  // Access
  fires('pod-exec-attach', 'kubectl exec (ResponseStarted, 101)', ev('create', 'pods/exec default/web-1', { query: 'command=sh&container=web&stdin=true&stdout=true&tty=true' }), { severity: 'medium', message: `${ALICE} did exec into pod default/web-1` }),
  fires('pod-exec-attach', 'kubectl attach over websocket (get), at ResponseComplete', ev('get', 'pods/attach default/web-1', { stage: 'ResponseComplete', query: 'container=web&stdin=true&stdout=true' })),
  quiet('pod-exec-attach', 'exec in kube-system (the kube-system rule reports it)', ev('create', 'pods/exec kube-system/etcd-cp-1')),
  quiet('pod-exec-attach', 'exec refused', ev('create', 'pods/exec default/web-1', { code: 403, stage: 'ResponseComplete' })),
  quiet('pod-exec-attach', 'exec at RequestReceived: before the apiserver decided', ev('create', 'pods/exec default/web-1', { stage: 'RequestReceived', set: { responseStatus: undefined } })),

  // What the exec runs: the command parameters of the URI, as kubectl encodes them (Go url.Values: '/' as %2F, ' ' as '+').
  fires('pod-exec-file-copy', 'kubectl cp out of the pod (tar cf -)', ev('create', 'pods/exec prod/db-0', { query: 'command=tar&command=cf&command=-&command=%2Fvar%2Flib%2Fpostgresql%2Fdata&container=db&stderr=true&stdout=true' }), { severity: 'medium', message: `${ALICE} copied files with tar in pod prod/db-0: tar cf - /var/lib/postgresql/data` }),
  fires('pod-exec-file-copy', 'kubectl cp into the pod (tar -xmf -), over websocket (get)', ev('get', 'pods/exec prod/web-1', { query: 'command=tar&command=-xmf&command=-&command=-C&command=%2Ftmp&container=web&stdin=true&stderr=true&stdout=true' })),
  fires('pod-exec-file-copy', 'tar inside a script', ev('create', 'pods/exec prod/web-1', { query: 'command=sh&command=-c&command=cd+%2Fapp+%26%26+tar+czf+-+.&container=web&stdout=true' })),
  quiet('pod-exec-file-copy', 'an exec that only names a tar file', ev('create', 'pods/exec prod/web-1', { query: 'command=ls&command=-l&command=%2Fbackup%2Fdump.tar&container=web&stdout=true' })),
  quiet('pod-exec-file-copy', 'kubectl cp refused', ev('create', 'pods/exec prod/db-0', { code: 403, stage: 'ResponseComplete', query: 'command=tar&command=cf&command=-&command=%2Fdata&container=db&stdout=true' })),

  fires('pod-exec-credential-read', 'cat of the service account token', ev('create', 'pods/exec prod/api-0', { query: 'command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=api&stderr=true&stdout=true' }), { severity: 'high', message: `${ALICE} read credentials in pod prod/api-0: cat /var/run/secrets/kubernetes.io/serviceaccount/token` }),
  fires('pod-exec-credential-read', 'the node\'s admin.conf through a script in a hostPath pod', ev('create', 'pods/exec default/debug', { query: 'command=sh&command=-c&command=cat+%2Fhost%2Fetc%2Fkubernetes%2Fadmin.conf&container=debug&stdout=true' })),
  fires('pod-exec-credential-read', 'a kubeconfig under ~/.kube', ev('create', 'pods/exec ci/runner-7', { query: 'command=cat&command=%7E%2F.kube%2Fconfig&container=runner&stdout=true' })),
  quiet('pod-exec-credential-read', 'a look at a file that is not a credential', ev('create', 'pods/exec prod/api-0', { query: 'command=cat&command=%2Fetc%2Fos-release&container=api&stdout=true' })),
  quiet('pod-exec-credential-read', 'a path that only starts like one (/etc/kubernetes-release)', ev('create', 'pods/exec prod/api-0', { query: 'command=cat&command=%2Fetc%2Fkubernetes-release&container=api&stdout=true' })),
  quiet('pod-exec-credential-read', 'attach has no command', ev('create', 'pods/attach prod/api-0', { query: 'container=api&stdin=true&stdout=true&tty=true' })),

  fires('pod-exec-interactive-shell', 'kubectl exec -it -- bash', ev('create', 'pods/exec prod/api-0', { query: 'command=bash&container=api&stdin=true&stdout=true&tty=true' }), { severity: 'medium', message: `${ALICE} opened an interactive shell (bash, with a terminal) in pod prod/api-0` }),
  fires('pod-exec-interactive-shell', 'kubectl exec -i -- /bin/sh, no terminal', ev('create', 'pods/exec prod/api-0', { query: 'command=%2Fbin%2Fsh&container=api&stdin=true&stdout=true&stderr=true' })),
  fires('pod-exec-interactive-shell', 'busybox sh', ev('create', 'pods/exec prod/api-0', { query: 'command=busybox&command=sh&container=api&stdin=true&stdout=true&tty=true' })),
  quiet('pod-exec-interactive-shell', 'a shell given a script (sh -c)', ev('create', 'pods/exec prod/api-0', { query: 'command=sh&command=-c&command=ls+%2Fapp&container=api&stdin=true&stdout=true&tty=true' })),
  quiet('pod-exec-interactive-shell', 'a shell without stdin', ev('create', 'pods/exec prod/api-0', { query: 'command=bash&container=api&stdout=true' })),
  quiet('pod-exec-interactive-shell', 'a command that is not a shell (bashful is not bash)', ev('create', 'pods/exec prod/api-0', { query: 'command=bashful&container=api&stdin=true&stdout=true&tty=true' })),

  fires('pod-exec-attach-kube-system', 'exec into etcd', ev('create', 'pods/exec kube-system/etcd-cp-1', { user: ADMIN, query: 'command=sh&container=etcd&stdin=true&stdout=true&tty=true' }), { severity: 'high', message: `${ADMIN} did exec into pod kube-system/etcd-cp-1` }),
  quiet('pod-exec-attach-kube-system', 'kube-proxy\'s service account exec-ing into a kube-system pod', ev('create', 'pods/exec kube-system/kube-proxy-x2v9k', { user: sa('kube-system', 'kube-proxy'), query: 'command=iptables-save&container=kube-proxy&stdout=true' })),
  fires('pod-exec-attach-kube-system', 'another namespace\'s service account exec-ing into kube-system', ev('create', 'pods/exec kube-system/kube-proxy-x2v9k', { user: sa('ci', 'deployer'), query: 'command=sh&container=kube-proxy&stdin=true&stdout=true&tty=true' })),
  fires('pod-exec-credential-read', 'a kube-system service account reading a token through exec: still judged', ev('create', 'pods/exec kube-system/coredns-5d78c9869d-7xk2p', { user: sa('kube-system', 'kube-proxy'), query: 'command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=coredns&stdout=true' })),
  quiet('pod-exec-attach-kube-system', 'exec in default', ev('create', 'pods/exec default/web-1', { user: ADMIN })),
  quiet('pod-exec-attach-kube-system', 'exec into etcd, refused', ev('create', 'pods/exec kube-system/etcd-cp-1', { code: 403, stage: 'ResponseComplete' })),

  fires('pod-portforward', 'port-forward', ev('create', 'pods/portforward prod/db-0'), { severity: 'medium', message: `${ALICE} port-forwarded into pod prod/db-0` }),
  quiet('pod-portforward', 'port-forward refused', ev('create', 'pods/portforward prod/db-0', { code: 403, stage: 'ResponseComplete' })),
  quiet('pod-portforward', 'reading the pod\'s log', ev('get', 'pods/log prod/db-0')),

  fires('secret-read-by-human', 'a person reads a secret', ev('get', 'secrets prod/db-password'), { severity: 'medium', message: `${ALICE} did get on secrets prod/db-password` }),
  fires('secret-read-by-human', 'a person lists a namespace\'s secrets', ev('list', 'secrets prod/')),
  quiet('secret-read-by-human', 'a service account reads one', ev('get', 'secrets prod/db-password', { user: sa('prod', 'api') })),
  quiet('secret-read-by-human', 'the read is refused', ev('get', 'secrets prod/db-password', { code: 403 })),
  quiet('secret-read-by-human', 'a config map, not a secret', ev('get', 'configmaps prod/app-config')),

  fires('secret-read-cross-namespace', 'a CI service account reads prod\'s secret', ev('get', 'secrets prod/db-password', { user: sa('ci', 'deployer') }), { severity: 'medium', message: `${sa('ci', 'deployer')} did get on secrets prod/db-password` }),
  fires('secret-read-cross-namespace', 'namespace ci-prod is not namespace ci', ev('list', 'secrets ci/', { user: sa('ci-prod', 'deployer') })),
  quiet('secret-read-cross-namespace', 'a service account reads its own namespace\'s secret', ev('get', 'secrets prod/db-password', { user: sa('prod', 'api') })),
  quiet('secret-read-cross-namespace', 'a kube-system controller', ev('get', 'secrets prod/db-password', { user: sa('kube-system', 'generic-garbage-collector') })),

  fires('secret-list-cluster-wide', 'a person lists every secret', ev('list', 'secrets'), { severity: 'high', message: `${ALICE} did list on secrets in all namespaces` }),
  fires('secret-list-cluster-wide', 'a service account watches every secret', ev('watch', 'secrets', { user: sa('monitoring', 'agent'), query: 'watch=true' })),
  quiet('secret-list-cluster-wide', 'listing one namespace\'s secrets', ev('list', 'secrets prod/')),
  quiet('secret-list-cluster-wide', 'the controller manager\'s informer', ev('list', 'secrets', { user: KCM, query: 'limit=500&resourceVersion=0' })),

  fires('serviceaccount-token-created', 'kubectl create token', ev('create', 'serviceaccounts/token default/builder', { object: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', metadata: { name: 'builder', namespace: 'default' }, spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3600 } } }), { severity: 'low', message: `${ALICE} obtained a token for service account default/builder` }),
  quiet('serviceaccount-token-created', 'a kubelet getting its pod\'s token', ev('create', 'serviceaccounts/token default/builder', { user: NODE })),
  quiet('serviceaccount-token-created', 'creating the service account itself', write('create', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'builder', namespace: 'default' } })),

  fires('csr-created', 'a person creates a CSR', write('create', csr('alice-admin')), { severity: 'low', message: `${ALICE} created certificate signing request alice-admin for signer kubernetes.io/kube-apiserver-client` }),
  quiet('csr-created', 'a kubelet renewing its certificate', write('create', csr('csr-8xk2p'), { user: NODE })),
  quiet('csr-created', 'a bootstrap token joining a node', write('create', csr('node-csr-AbC'), { user: 'system:bootstrap:abcdef' })),
  quiet('csr-created', 'the create, refused', write('create', csr('alice-admin'), { code: 403 })),

  fires('csr-approved', 'kubectl certificate approve', ev('update', `certificatesigningrequests.certificates.k8s.io/approval alice-admin`, { object: csr('alice-admin', [approved]) }), { severity: 'medium', message: `${ALICE} approved certificate signing request alice-admin` }),
  quiet('csr-approved', 'the controller manager approving a kubelet\'s', ev('update', `certificatesigningrequests.certificates.k8s.io/approval csr-8xk2p`, { user: KCM, object: csr('csr-8xk2p', [approved]) })),
  quiet('csr-approved', 'denied, not approved', ev('update', `certificatesigningrequests.certificates.k8s.io/approval alice-admin`, { object: csr('alice-admin', [{ type: 'Denied', status: 'True', reason: 'KubectlDeny' }]) })),

  fires('impersonation-used', 'kubectl --as', ev('get', 'secrets prod/db-password', { set: { impersonatedUser: { username: sa('prod', 'api'), groups: ['system:serviceaccounts', 'system:authenticated'] } } }), { severity: 'medium', message: `${ALICE} acted as ${sa('prod', 'api')}: get /api/v1/namespaces/prod/secrets/db-password` }),
  quiet('impersonation-used', 'the same request without impersonation', ev('get', 'secrets prod/db-password')),

  // Identity
  fires('anonymous-request-allowed', 'anonymous reads kube-system secrets', ev('get', 'secrets kube-system/', { user: ANON, set: { sourceIPs: ['203.0.113.7'] } }), { severity: 'high', message: `anonymous get /api/v1/namespaces/kube-system/secrets from 203.0.113.7 was allowed (200)` }),
  fires('anonymous-request-allowed', 'anonymous API discovery', ev('get', '', { user: ANON, uri: '/apis' })),
  quiet('anonymous-request-allowed', 'anonymous /readyz', ev('get', '', { user: ANON, uri: '/readyz' })),
  quiet('anonymous-request-allowed', 'anonymous /livez?verbose', ev('get', '', { user: ANON, uri: '/livez', query: 'verbose' })),
  fires('anonymous-request-refused', 'anonymous list of kube-system secrets, refused', ev('list', 'secrets kube-system/', { user: ANON, code: 403, set: { sourceIPs: ['203.0.113.7'] } }), { severity: 'low', message: 'anonymous list /api/v1/namespaces/kube-system/secrets from 203.0.113.7 was refused (403)' }),
  fires('anonymous-request-refused', 'anonymous /metrics, refused', ev('get', '', { user: ANON, uri: '/metrics', code: 403 })),
  fires('anonymous-request-refused', 'anonymous exec, refused', ev('create', 'pods/exec kube-system/etcd-cp-1', { user: ANON, code: 403, stage: 'ResponseComplete' })),
  fires('anonymous-request-refused', 'anonymous /apis discovery, refused', ev('get', '', { user: ANON, uri: '/apis', code: 403 })),
  quiet('anonymous-request-refused', 'anonymous /healthz refused', ev('get', '', { user: ANON, uri: '/healthz', code: 403 })),
  quiet('anonymous-request-refused', 'anonymous /readyz?verbose refused', ev('get', '', { user: ANON, uri: '/readyz', query: 'verbose', code: 403 })),
  quiet('anonymous-request-refused', 'anonymous /openapi/v3 refused', ev('get', '', { user: ANON, uri: '/openapi/v3', code: 403 })),
  quiet('anonymous-request-refused', 'anonymous OIDC discovery refused', ev('get', '', { user: ANON, uri: '/.well-known/openid-configuration', code: 403 })),
  quiet('anonymous-request-refused', 'anonymous /version refused', ev('get', '', { user: ANON, uri: '/version', code: 403 })),
  quiet('anonymous-request-refused', 'anonymous allowed: anonymous-request-allowed\'s', ev('get', 'secrets kube-system/', { user: ANON })),
  quiet('anonymous-request-refused', 'a person refused', ev('list', 'secrets kube-system/', { code: 403 })),

  // Where a request comes from (CLUSTER_NETWORKS and KNOWN_BAD, set below)
  fires('system-identity-outside-cluster', 'a kubelet credential used from the internet', ev('get', 'secrets kube-system/bootstrap-token-abcdef', { user: NODE, set: { sourceIPs: ['203.0.113.50'] } }), { severity: 'high', message: `${NODE} did get /api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef from 203.0.113.50, outside the cluster's networks` }),
  fires('system-identity-outside-cluster', 'kube-proxy\'s token with a forged in-cluster X-Forwarded-For', ev('list', 'endpointslices.discovery.k8s.io', { user: sa('kube-system', 'kube-proxy'), set: { sourceIPs: ['10.244.1.5', '203.0.113.50'] } })),
  fires('system-identity-outside-cluster', 'the controller manager from an outside IPv6 address', ev('list', 'secrets', { user: KCM, set: { sourceIPs: ['2001:db8::5'] } })),
  fires('system-identity-outside-cluster', 'a kubelet credential refused from outside', ev('list', 'secrets', { user: NODE, code: 403, set: { sourceIPs: ['198.51.100.200'] } })),
  quiet('system-identity-outside-cluster', 'a kubelet from its node network', ev('get', 'nodes worker-1', { user: NODE })),
  quiet('system-identity-outside-cluster', 'kube-proxy from the pod network', ev('list', 'endpointslices.discovery.k8s.io', { user: sa('kube-system', 'kube-proxy'), set: { sourceIPs: ['10.244.1.5'] } })),
  quiet('system-identity-outside-cluster', 'the controller manager over loopback (a host-network static pod)', ev('list', 'secrets', { user: KCM, set: { sourceIPs: ['127.0.0.1'] } })),
  quiet('system-identity-outside-cluster', 'an IPv4-mapped node address', ev('get', 'nodes worker-1', { user: NODE, set: { sourceIPs: ['::ffff:192.168.10.22'] } })),
  quiet('system-identity-outside-cluster', 'a person from outside: not a system identity', ev('list', 'secrets', { set: { sourceIPs: ['203.0.113.50'] } })),
  quiet('system-identity-outside-cluster', 'a service account of an application namespace from outside', ev('list', 'secrets', { user: sa('prod', 'web'), set: { sourceIPs: ['203.0.113.50'] } })),
  fires('known-bad-source-address', 'a person from a listed network', ev('get', 'pods prod/', { set: { sourceIPs: ['198.51.100.9'] } }), { severity: 'high', message: `${ALICE} did get /api/v1/namespaces/prod/pods from known-bad 198.51.100.9` }),
  fires('known-bad-source-address', 'anonymous, refused, a listed address behind a proxy', ev('get', '', { user: ANON, uri: '/api', code: 403, set: { sourceIPs: ['203.0.113.66', '192.168.10.5'] } })),
  quiet('known-bad-source-address', 'the address next to a listed one', ev('get', 'pods prod/', { set: { sourceIPs: ['203.0.113.67'] } })),
  quiet('known-bad-source-address', 'an in-cluster address', ev('get', 'pods prod/')),
  quiet('anonymous-request-allowed', 'anonymous refused (as in the v1.26 sample)', ev('get', 'secrets kube-system/', { user: ANON, code: 403 })),

  fires('forbidden-request-by-human', 'a person refused a secret', ev('get', 'secrets kube-system/bootstrap-token-abcdef', { code: 403 }), { severity: 'low', message: `${ALICE} was refused get /api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef` }),
  fires('forbidden-request-by-human', 'a person refused a non-resource URL (no objectRef)', ev('get', '', { uri: '/metrics', code: 403 })),
  quiet('forbidden-request-by-human', 'a service account refused', ev('get', 'secrets kube-system/bootstrap-token-abcdef', { user: sa('prod', 'api'), code: 403 })),
  quiet('forbidden-request-by-human', 'a person allowed', ev('get', 'secrets kube-system/bootstrap-token-abcdef')),
  quiet('forbidden-request-by-human', 'a person not found (404 is not 403)', ev('get', 'secrets kube-system/nope', { code: 404 })),

  fires('system-masters-member-acting', 'admin.conf lists pods', ev('list', 'pods', { user: ADMIN }), { severity: 'low', message: `${ADMIN} (system:masters) did list /api/v1/pods` }),
  quiet('system-masters-member-acting', 'the apiserver\'s loopback client', ev('list', 'pods', { user: APISERVER })),
  quiet('system-masters-member-acting', 'a person not in system:masters', ev('list', 'pods', { user: 'bob@example.com' })),

  fires('node-identity-refused', 'a kubelet credential reading another namespace\'s secrets', ev('list', 'secrets kube-system/', { user: NODE, code: 403 }), { severity: 'high', message: `${NODE} was refused list /api/v1/namespaces/kube-system/secrets` }),
  quiet('node-identity-refused', 'the kubelet allowed', ev('get', 'secrets default/web-tls', { user: NODE })),
  quiet('node-identity-refused', 'a person refused', ev('list', 'secrets kube-system/', { code: 403 })),

  fires('node-identity-out-of-scope', 'a kubelet credential creating a ClusterRoleBinding', write('create', binding('node-admin', 'ClusterRole cluster-admin', [user('mallory')]), { user: NODE }), { severity: 'high', message: `${NODE} did create /apis/rbac.authorization.k8s.io/v1/clusterrolebindings` }),
  fires('node-identity-out-of-scope', 'a kubelet credential deleting a Deployment', ev('delete', 'deployments.apps prod/api', { user: NODE })),
  quiet('node-identity-out-of-scope', 'a kubelet creating its static pod\'s mirror pod', write('create', pod('kube-system/etcd-worker-1'), { user: NODE })),
  quiet('node-identity-out-of-scope', 'a kubelet renewing its lease', ev('update', 'leases.coordination.k8s.io kube-node-lease/worker-1', { user: NODE })),
  quiet('node-identity-out-of-scope', 'the same delete refused by the node authorizer', ev('delete', 'deployments.apps prod/api', { user: NODE, code: 403 })),

  // Network
  fires('network-policy-changed', 'the default-deny policy deleted', ev('delete', 'networkpolicies.networking.k8s.io prod/default-deny'), { severity: 'medium', message: `${ALICE} did delete on network policy prod/default-deny` }),
  quiet('network-policy-changed', 'a policy read', ev('get', 'networkpolicies.networking.k8s.io prod/default-deny')),
  quiet('network-policy-changed', 'the delete of a policy that is not there', ev('delete', 'networkpolicies.networking.k8s.io prod/default-deny', { code: 404 })),

  fires('service-exposed', 'a NodePort service', write('create', service('prod/web', 'NodePort')), { severity: 'medium', message: `${ALICE} exposed service prod/web as NodePort` }),
  fires('service-exposed', 'a label patch of a LoadBalancer: the patch body has no type, the response (object) has', write('patch', service('prod/web', 'LoadBalancer'))),
  quiet('service-exposed', 'a ClusterIP service', write('create', service('prod/web', 'ClusterIP'))),
  quiet('service-exposed', 'a patch back to ClusterIP', write('patch', service('prod/web', 'ClusterIP'), { patch: { spec: { type: 'ClusterIP' } } })),

  fires('ingress-without-tls', 'an Ingress without tls', write('create', ingress('prod/shop', false)), { severity: 'low', message: `${ALICE} did create on ingress prod/shop without TLS` }),
  quiet('ingress-without-tls', 'an Ingress with tls', write('create', ingress('prod/shop', true))),

  fires('cluster-object-changed', 'a config map created', write('create', configMap('prod/app-config')), { severity: 'info', message: `${ALICE} did create on configmaps prod/app-config` }),
  fires('cluster-object-changed', 'a namespace deleted', ev('delete', 'namespaces foo')),
  fires('cluster-object-changed', 'a secret created at Metadata level (no body)', ev('create', 'secrets prod/db-password')),
  quiet('cluster-object-changed', 'the controller manager creating the root CA config map', write('create', configMap('prod/kube-root-ca.crt', { 'ca.crt': '-----BEGIN CERTIFICATE-----' }), { user: KCM })),
  quiet('cluster-object-changed', 'a config map updated (not created or deleted)', write('update', configMap('prod/app-config'))),

  // Trail
  fires('audit-configuration-changed', 'kubeadm-config patched', write('patch', configMap('kube-system/kubeadm-config', { ClusterConfiguration: 'apiServer:\n  extraArgs:\n    audit-policy-file: /dev/null\n' })), { severity: 'high', message: `${ALICE} did patch on configmap kube-system/kubeadm-config` }),
  fires('audit-configuration-changed', 'an audit-policy config map deleted', ev('delete', 'configmaps kube-system/audit-policy-v2')),
  quiet('audit-configuration-changed', 'kubeadm-config read', ev('get', 'configmaps kube-system/kubeadm-config')),
  quiet('audit-configuration-changed', 'another config map patched', write('patch', configMap('kube-system/coredns'))),

  fires('auditrail-tampered', 'the agent DaemonSet patched', write('patch', workload('DaemonSet', 'auditrail/auditrail-agent')), { severity: 'critical', message: `${ALICE} did patch on daemonsets auditrail/auditrail-agent` }),
  fires('auditrail-tampered', 'the rules config map deleted', ev('delete', 'configmaps auditrail/auditrail-rules')),
  quiet('auditrail-tampered', 'the DaemonSet controller updating the agent DaemonSet', write('update', workload('DaemonSet', 'auditrail/auditrail-agent'), { user: sa('kube-system', 'daemon-set-controller') })),
  quiet('auditrail-tampered', 'the same patch in another namespace', write('patch', workload('DaemonSet', 'monitoring/auditrail-agent'))),
  quiet('auditrail-tampered', 'the patch, refused', write('patch', workload('DaemonSet', 'auditrail/auditrail-agent'), { code: 403 })),

  fires('auditrail-namespace-deleted', 'kubectl delete namespace auditrail', ev('delete', 'namespaces auditrail'), { severity: 'critical', message: `${ALICE} deleted the auditrail namespace` }),
  quiet('auditrail-namespace-deleted', 'another namespace deleted', ev('delete', 'namespaces foo')),
  quiet('auditrail-namespace-deleted', 'the delete, refused', ev('delete', 'namespaces auditrail', { code: 403 })),

  fires('admission-control-changed', 'a mutating webhook created', write('create', webhook('MutatingWebhookConfiguration', 'injector')), { severity: 'high', message: `${ALICE} did create on mutatingwebhookconfigurations injector` }),
  fires('admission-control-changed', 'a validating webhook deleted', ev('delete', 'validatingwebhookconfigurations.admissionregistration.k8s.io gatekeeper-validating-webhook-configuration')),
  quiet('admission-control-changed', 'the apiserver itself', write('update', webhook('ValidatingWebhookConfiguration', 'policy'), { user: APISERVER })),
  quiet('admission-control-changed', 'a webhook configuration read', ev('get', 'validatingwebhookconfigurations.admissionregistration.k8s.io policy')),
]

// Found by this suite's first run and fixed in the rules and the engine: each now fires.
cases.push(
  quiet('ephemeral-container-with-privileges', 'kubectl debug with the default profile', ev('patch', 'pods/ephemeralcontainers default/web-1', { patch: { spec: { ephemeralContainers: [container('debugger-x7k2p', { image: 'busybox' })] } }, object: pod('default/web-1', { ephemeralContainers: [container('debugger-x7k2p', { image: 'busybox' })] }) })),
  fires('ephemeral-container-with-privileges', 'kubectl debug --profile=sysadmin: a privileged ephemeral container added through pods/ephemeralcontainers', ev('patch', 'pods/ephemeralcontainers default/web-1', { patch: { spec: { ephemeralContainers: [container('debugger-x7k2p', { image: 'busybox', ...PRIVILEGED })] } }, object: pod('default/web-1', { ephemeralContainers: [container('debugger-x7k2p', { image: 'busybox', ...PRIVILEGED })] }) })),
  fires('sensitive-host-path-mount', 'hostPath /run holds /run/containerd/containerd.sock', write('create', pod('default/web-1', { volumes: [{ name: 'run', hostPath: { path: '/run' } }] }))),
  fires('sensitive-host-path-mount', 'hostPath /var/lib holds the kubelet\'s and etcd\'s data', write('create', pod('default/web-1', { volumes: [{ name: 'lib', hostPath: { path: '/var/lib' } }] }))),
  fires('impersonation-used', 'kubectl --as=... exec', ev('create', 'pods/exec prod/api-0', { stage: 'ResponseComplete', set: { impersonatedUser: { username: sa('prod', 'api'), groups: ['system:serviceaccounts', 'system:authenticated'] } } })),
  fires('anonymous-request-allowed', 'an anonymous exec allowed', ev('create', 'pods/exec kube-system/etcd-cp-1', { user: ANON, stage: 'ResponseComplete' })),
  fires('forbidden-request-by-human', 'a person refused exec', ev('create', 'pods/exec kube-system/etcd-cp-1', { code: 403, stage: 'ResponseComplete' })),
  fires('node-identity-refused', 'a kubelet credential refused exec into another node\'s pod', ev('create', 'pods/exec kube-system/etcd-cp-1', { user: NODE, code: 403, stage: 'ResponseComplete' })),
  fires('node-identity-out-of-scope', 'a kubelet credential deleting a ServiceAccount', ev('delete', 'serviceaccounts kube-system/default', { user: NODE })),
  fires('auditrail-tampered', 'kubectl -n auditrail scale deployment auditrail-collector --replicas=0', ev('patch', 'deployments.apps/scale auditrail/auditrail-collector', { patch: { spec: { replicas: 0 } }, object: { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'auditrail-collector', namespace: 'auditrail' }, spec: { replicas: 0 } } })),
  fires('auditrail-tampered', 'the collector\'s PersistentVolumeClaim deleted', ev('delete', 'persistentvolumeclaims auditrail/auditrail-collector')),
  fires('workload-in-system-namespace', 'a CI service account of another namespace creates a DaemonSet in kube-system', write('create', workload('DaemonSet', 'kube-system/node-helper'), { user: sa('ci', 'deployer') })),
)

// ---------------------------------------------------------------- the tests

// Networks as a kubeadm cluster has them: nodes 192.168.10.0/24, pods 10.244.0.0/16, services 10.96.0.0/12.
const CLUSTER_NETWORKS = new NetworkSet(['192.168.10.0/24', '10.244.0.0/16', '10.96.0.0/12', 'fd00:10:244::/56'])
const KNOWN_BAD = new NetworkSet(['198.51.100.0/24', '203.0.113.66'])
setClusterNetworks(CLUSTER_NETWORKS)
setKnownBadAddresses(KNOWN_BAD)
const rules = loadRuleSet([BUILTIN_RULES_DIR])

function decode(json: unknown): AuditEvent {
  const result = decodeAuditLine(Buffer.from(JSON.stringify(json)))
  if (!('event' in result)) throw new Error(`the event did not decode: ${result.unparsed}`)
  return result.event
}

function inspect(json: unknown): RuleFinding[] {
  const out: RuleFinding[] = []
  rules.inspect(decode(json), out)
  return out
}

t.test('every enabled built-in rule has a case that fires it and one that must not', async (t) => {
  const enabled = rules.rules.map((r) => r.id).sort()
  t.same([...new Set(cases.filter((c) => c.fires).map((c) => c.rule))].sort(), enabled, 'rules with a firing case')
  t.same([...new Set(cases.filter((c) => !c.fires).map((c) => c.rule))].sort(), enabled, 'rules with a case that must not fire')
})

for (const c of cases) {
  t.test(`${c.rule} ${c.fires ? 'fires' : 'stays quiet'}: ${c.why}`, async (t) => {
    const findings = inspect(c.event)
    const hits = findings.filter((f) => f.id === c.rule)
    if (!c.fires) {
      t.equal(hits.length, 0, `no ${c.rule} finding`)
      return
    }
    t.equal(hits.length, 1, `one ${c.rule} finding (findings: ${findings.map((f) => f.id).join(', ') || 'none'})`)
    const f = hits[0]
    if (!f) return
    const rule = rules.rules.find((r) => r.id === c.rule)!
    const ev = c.event as { auditID: string }
    t.equal(f.source, 'rule')
    t.equal(f.severity, rule.severity)
    t.equal(f.auditId, ev.auditID)
    // What the finding adds to its event; the event's fields are in the record it points to.
    t.same(f.details, { title: rule.title, ...(rule.mitre.length > 0 ? { mitre: rule.mitre.join(',') } : {}) }, 'details: title and techniques, no event field')
    t.notMatch(f.message, /<none>/, 'every placeholder of the message rendered')
    if (c.expect) {
      t.equal(f.severity, c.expect.severity)
      t.equal(f.message, c.expect.message)
    }
  })
}

t.test('with no cluster networks and no known-bad list configured, the address rules never fire', async (t) => {
  setClusterNetworks(new NetworkSet([]))
  setKnownBadAddresses(new NetworkSet([]))
  t.teardown(() => {
    setClusterNetworks(CLUSTER_NETWORKS)
    setKnownBadAddresses(KNOWN_BAD)
  })
  for (const c of cases.filter((c) => c.fires && ['system-identity-outside-cluster', 'known-bad-source-address'].includes(c.rule))) {
    t.same(inspect(c.event).filter((f) => f.id === c.rule), [], `${c.rule}: ${c.why}`)
  }
})

t.test('a multi-stage rule fires once per request: ResponseStarted then ResponseComplete of one exec', async (t) => {
  const started = ev('create', 'pods/exec default/web-1', { query: 'command=sh&stdin=true&tty=true' })
  const completed = { ...started, stage: 'ResponseComplete', stageTimestamp: '2026-11-25T10:21:40.004122Z' }
  const first = inspect(started).filter((f) => f.id === 'pod-exec-attach')
  const second = inspect(completed).filter((f) => f.id === 'pod-exec-attach')
  t.equal(first.length, 1, 'ResponseStarted fires')
  t.equal(second.length, 0, 'ResponseComplete of the same auditID does not fire again')
  t.equal(first[0]?.auditId, started.auditID)
  const another = ev('create', 'pods/exec default/web-1', { stage: 'ResponseComplete' })
  t.equal(inspect(another).filter((f) => f.id === 'pod-exec-attach').length, 1, 'another exec (another auditID) fires, even seen only at ResponseComplete')
  // A single-stage rule is not deduplicated: the same event seen twice (a re-read file) is two findings.
  const read = ev('get', 'secrets prod/db-password')
  t.equal(inspect(read).filter((f) => f.id === 'secret-read-by-human').length, 1)
  t.equal(inspect(read).filter((f) => f.id === 'secret-read-by-human').length, 1)
})

t.test('a condition that reads a missing field is false and does not throw', async (t) => {
  const none = (json: Json, rule: string, why: string) => {
    let findings: RuleFinding[] = []
    t.doesNotThrow(() => {
      findings = inspect(json)
    }, why)
    t.notOk(findings.some((f) => f.id === rule), `${why}: no ${rule}`)
    return findings
  }
  none(ev('create', 'pods/exec default/web-1', { set: { responseStatus: undefined } }), 'pod-exec-attach', 'an exec without responseStatus')
  none(ev('get', '', { user: ANON, uri: '/api', set: { responseStatus: undefined } }), 'anonymous-request-allowed', 'an anonymous request without responseStatus')
  const metadataOnly = none(ev('create', `clusterrolebindings.${RBAC} ci-admin`), 'binding-to-cluster-admin', 'a binding at Metadata level (no body, so no object)')
  t.ok(metadataOnly.some((f) => f.id === 'rbac-object-changed'), 'the rules that need no body still fire')
  none(write('create', clusterRole('empty', [])), 'role-with-wildcard', 'a role with no rules')
  none(write('create', { apiVersion: `${RBAC}/v1`, kind: 'ClusterRole', metadata: { name: 'aggregated' }, aggregationRule: { clusterRoleSelectors: [] } }), 'role-with-write-access', 'an aggregated role without a rules field')
  none(write('create', pod('default/web-1', { containers: [{ name: 'web', image: 'nginx' }] })), 'privileged-container', 'a container without securityContext')
  none(write('create', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: 'default' }, spec: {} }), 'host-network', 'a pod spec without containers or hostNetwork')
  none(write('create', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'prod' } }), 'service-exposed', 'a service without spec')
  none(ev('get', 'secrets', { user: sa('ci', 'deployer') }), 'secret-read-cross-namespace', 'a service account reading a secret without objectRef.namespace')
  none(ev('update', `certificatesigningrequests.certificates.k8s.io/approval alice-admin`, { object: csr('alice-admin').spec as Json }), 'csr-approved', 'an approval without status')
})

t.test('an event with an unexpected shape never throws', async (t) => {
  const base = [
    write('create', pod('default/web-1', { containers: [container('web', PRIVILEGED)] })),
    write('create', workload('Deployment', 'kube-system/api')),
    write('patch', workload('CronJob', 'ops/cleanup')),
    write('create', binding('ci-admin', 'ClusterRole cluster-admin', [user('bob')])),
    write('create', clusterRole('god', [grant(['*'], ['*'])])),
    write('create', service('prod/web', 'NodePort')),
    write('create', ingress('prod/shop', false)),
    write('update', csr('x', [approved])),
    ev('update', `certificatesigningrequests.certificates.k8s.io/approval alice-admin`, { object: csr('alice-admin', [approved]) }),
    ev('create', 'pods/exec kube-system/etcd-cp-1'),
    ev('get', 'secrets prod/db-password', { user: sa('ci', 'deployer') }),
    ev('list', 'secrets', { user: ANON }),
    ev('delete', 'namespaces auditrail', { user: NODE, set: { impersonatedUser: { username: ADMIN } } }),
    ev('get', '', { uri: '/metrics', code: 403 }),
  ]
  const bodies: unknown[] = [
    'a string', 42, null, true, [], [pod('default/x')],
    { kind: 'Pod' }, { kind: 'Pod', spec: 'x' }, { kind: 'Pod', spec: null }, { kind: 7, spec: {} },
    { kind: 'Pod', spec: { containers: 'nginx' } },
    { kind: 'Pod', spec: { containers: { web: PRIVILEGED } } },
    { kind: 'Pod', spec: { containers: [null, 1, 'x', [], { securityContext: 'privileged' }, { securityContext: { privileged: 'true', capabilities: { add: 'ALL' } } }] } },
    { kind: 'Pod', spec: { containers: [{ image: 7, securityContext: { runAsUser: '0', capabilities: { add: [1, null] } } }], securityContext: [], hostNetwork: 'true' } },
    { kind: 'Pod', spec: { volumes: { hostPath: '/' } } },
    { kind: 'Pod', spec: { volumes: [null, { hostPath: null }, { hostPath: { path: 7 } }, { hostPath: '/' }] } },
    { kind: 'Deployment', spec: { template: [] } }, { kind: 'Deployment', spec: { template: { spec: 'x' } } },
    { kind: 'CronJob', spec: { jobTemplate: 'x' } },
    { kind: 'ClusterRoleBinding', roleRef: null, subjects: 'x' }, { kind: 'ClusterRoleBinding', roleRef: { name: 7 }, subjects: [null, 7] },
    { kind: 'ClusterRole', rules: 'x' }, { kind: 'ClusterRole', rules: [null, { verbs: '*', resources: 7 }, { verbs: ['*'], resources: null }] },
    { kind: 'Service', spec: { type: ['NodePort'] } }, { kind: 'Ingress', spec: { tls: 'yes' } },
    { kind: 'CertificateSigningRequest', status: { conditions: 'Approved' } },
    { metadata: 'x' }, { metadata: { name: { nested: true } } },
  ]
  const shapes: [string, (e: Json) => Json][] = [
    ['objectRef missing', (e) => ({ ...e, objectRef: undefined })],
    ['objectRef null', (e) => ({ ...e, objectRef: null })],
    ['objectRef a string', (e) => ({ ...e, objectRef: 'pods' })],
    ['objectRef fields of the wrong type', (e) => ({ ...e, objectRef: { resource: 7, namespace: ['kube-system'], name: {}, subresource: 1 } })],
    ['user without username and groups', (e) => ({ ...e, user: {} })],
    ['responseStatus missing', (e) => ({ ...e, responseStatus: undefined })],
    ['responseStatus.code a string', (e) => ({ ...e, responseStatus: { code: '200' } })],
    ['sourceIPs a string', (e) => ({ ...e, sourceIPs: '10.0.0.1' })],
    ['impersonatedUser a string', (e) => ({ ...e, impersonatedUser: 'admin' })],
    ['requestURI missing', (e) => ({ ...e, requestURI: undefined })],
    ['annotations a list', (e) => ({ ...e, annotations: [] })],
    ...bodies.map((body, i): [string, (e: Json) => Json] => [`body ${i} (${JSON.stringify(body).slice(0, 50)})`, (e) => ({ ...e, requestObject: body, responseObject: body })]),
  ]
  // A field the agent reads with the wrong type makes the line unparsed (shipped as evidence, named);
  // every other shape is inspected, and nothing throws.
  let inspected = 0
  let unparsed = 0
  for (const [name, reshape] of shapes) {
    for (const e of base) {
      for (const verb of [e.verb, 'patch']) {
        const hostile = reshape({ ...e, verb, auditID: nextAuditID() })
        try {
          const decoded = decodeAuditLine(Buffer.from(JSON.stringify(hostile)))
          if ('unparsed' in decoded) {
            t.match(decoded.unparsed, /^field [\w.]+: expected /, `${name}: the field is named`)
            unparsed++
            continue
          }
          rules.inspect(decoded.event, [])
          inspected++
        } catch (err) {
          t.fail(`${name} on ${String(e.verb)} ${String(e.requestURI)} as ${String(verb)}: ${(err as Error).message}`)
        }
      }
    }
  }
  t.equal(inspected + unparsed, shapes.length * base.length * 2, `${inspected} hostile events inspected, ${unparsed} unparsed, none threw`)
  t.ok(inspected > unparsed, 'hostile bodies are inspected: only the fields the agent reads are typed')

  t.test('what a hostile body does not fire', async (t) => {
    const ids = (body: unknown) => inspect({ ...write('create', pod('default/web-1')), requestObject: body, responseObject: body }).map((f) => f.id)
    t.notOk(ids('a string').includes('privileged-container'), 'requestObject a string')
    t.notOk(ids({ kind: 'Pod', spec: { containers: { web: PRIVILEGED } } }).includes('privileged-container'), 'containers a mapping, not a list')
    t.ok(ids('a string').includes('pod-created'), 'the rules that need no body still fire')
  })
})

t.test('user fields of the wrong type make the line unparsed, with the field named', async (t) => {
  const shapes: [string, unknown, RegExp][] = [
    ['username a number', { username: 42, groups: ['system:authenticated'] }, /^field user\.username: expected a string$/],
    ['username null', { username: null }, /^field user\.username: expected a string$/],
    ['groups a number', { username: ALICE, groups: 42 }, /^field user\.groups: expected a list of strings$/],
    ['groups a mapping', { username: ALICE, groups: { a: 1 } }, /^field user\.groups: expected a list of strings$/],
    ['groups a string', { username: ALICE, groups: 'system:masters' }, /^field user\.groups: expected a list of strings$/],
    ['groups with a number', { username: ALICE, groups: [7, null] }, /^field user\.groups: expected a list of strings$/],
    ['uid of the wrong type', { username: ALICE, uid: 7, extra: 'x' }, /^field user\.uid: expected a string$/],
  ]
  for (const [name, u, reason] of shapes) {
    for (const e of [ev('get', 'secrets prod/db-password'), ev('list', 'pods'), ev('create', 'pods/exec default/web-1'), ev('get', '', { uri: '/metrics', code: 403 })]) {
      const decoded = decodeAuditLine(Buffer.from(JSON.stringify({ ...e, user: u, auditID: nextAuditID() })))
      t.match('unparsed' in decoded ? decoded.unparsed : 'decoded', reason, `${name}, ${String(e.verb)} ${String(e.requestURI)}`)
    }
  }
})
