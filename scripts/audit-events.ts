// Generates realistic audit.k8s.io/v1 events: the traffic of a small cluster as
// the real apiserver logs it (see test/fixtures/apiserver-v1.26): lease renewals,
// controller reads and watches, pod and deployment changes, RBAC edits,
// secret reads, exec sessions, token requests, forbidden and anonymous calls.
// Deterministic for a seed, so tests and benchmarks replay the same log.

export interface AuditEventGenerator {
  /** One event as a JSON line without its newline, at event time `nowMs`. */
  next(nowMs?: number): string
}

/** mulberry32: small, fast, good enough to pick traffic; never for secrets. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface Request {
  verb: string
  uri: string
  resource?: { resource: string; namespace?: string; name?: string; apiGroup?: string; apiVersion: string; subresource?: string }
  user: { username: string; uid?: string; groups: string[] }
  userAgent: string
  sourceIP: string
  level: 'Metadata' | 'Request' | 'RequestResponse'
  code: number
  requestObject?: unknown
  responseObject?: unknown
  forbidden?: boolean
}

const NAMESPACES = ['default', 'kube-system', 'payments', 'frontend', 'monitoring', 'ci']
const NODES = ['cp-1', 'worker-1', 'worker-2', 'worker-3']
const CONTROLLERS = ['deployment-controller', 'replicaset-controller', 'endpointslice-controller', 'namespace-controller', 'garbage-collector']
const HUMANS = ['alice@example.com', 'bob@example.com', 'carol@example.com']

export function createAuditEventGenerator(options: { seed: number }): AuditEventGenerator {
  const rand = prng(options.seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 16).toString(16)).join('')
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-${(8 + Math.floor(rand() * 4)).toString(16)}${hex(3)}-${hex(12)}`
  const name = (prefix: string) => `${prefix}-${hex(5)}`
  /** A request held back to log its ResponseComplete after its RequestReceived. */
  const pendingResponses: string[] = []

  const systemUser = (who: string) => ({ username: `system:serviceaccount:kube-system:${who}`, uid: uuid(), groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'] })
  const nodeUser = (node: string) => ({ username: `system:node:${node}`, groups: ['system:nodes', 'system:authenticated'] })
  const human = () => ({ username: pick(HUMANS), groups: ['developers', 'system:authenticated'] })

  const podSpec = (privileged: boolean) => ({
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: { name: name('web'), namespace: pick(NAMESPACES), labels: { app: 'web' } },
    spec: {
      containers: [{ name: 'app', image: `registry.example.com/web:${hex(7)}`, resources: { limits: { cpu: '500m', memory: '256Mi' } }, ...(privileged ? { securityContext: { privileged: true } } : {}) }],
      ...(privileged ? { hostNetwork: true, hostPID: true, volumes: [{ name: 'host', hostPath: { path: '/' } }] } : {}),
      serviceAccountName: 'default',
    },
  })

  const itemsList = (kind: string, n: number) => ({
    kind: `${kind}List`,
    apiVersion: 'v1',
    metadata: { resourceVersion: String(100000 + Math.floor(rand() * 900000)) },
    items: Array.from({ length: n }, () => ({ metadata: { name: name(kind.toLowerCase()), namespace: pick(NAMESPACES), uid: uuid(), labels: { app: 'web', tier: 'frontend' }, annotations: { 'deployment.kubernetes.io/revision': '3' } }, spec: { nodeName: pick(NODES) } })),
  })

  /** One request by the mix of a quiet production cluster; weights add up to 1. */
  function request(): Request {
    const r = rand()
    const ns = pick(NAMESPACES)
    const obj = name(r < 0.70 ? 'cfg' : 'web')
    if (r < 0.34) {
      const node = pick(NODES)
      return { verb: 'update', uri: `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${node}?timeout=10s`, resource: { resource: 'leases', namespace: 'kube-node-lease', name: node, apiGroup: 'coordination.k8s.io', apiVersion: 'v1' }, user: nodeUser(node), userAgent: 'kubelet/v1.26.1 (linux/amd64) kubernetes/8f94681', sourceIP: '10.0.0.11', level: 'Metadata', code: 200 }
    }
    if (r < 0.56) {
      const res = pick(['configmaps', 'endpoints', 'pods', 'services', 'replicasets'])
      return { verb: 'get', uri: `/api/v1/namespaces/${ns}/${res}/${obj}`, resource: { resource: res, namespace: ns, name: obj, apiVersion: 'v1' }, user: systemUser(pick(CONTROLLERS)), userAgent: 'kube-controller-manager/v1.26.1 (linux/amd64) kubernetes/8f94681/system:serviceaccount:kube-system:generic', sourceIP: '10.0.0.10', level: 'Metadata', code: rand() < 0.1 ? 404 : 200 }
    }
    if (r < 0.70) {
      const res = pick(['pods', 'nodes', 'deployments', 'configmaps'])
      const big = rand() < 0.08
      return { verb: rand() < 0.5 ? 'list' : 'watch', uri: `/api/v1/${res}?limit=500&resourceVersion=0`, resource: { resource: res, apiVersion: 'v1' }, user: systemUser(pick(CONTROLLERS)), userAgent: 'kube-scheduler/v1.26.1 (linux/amd64) kubernetes/8f94681/scheduler', sourceIP: '10.0.0.10', level: big ? 'RequestResponse' : 'Metadata', code: 200, ...(big ? { responseObject: itemsList(res === 'pods' ? 'Pod' : 'Node', 10 + Math.floor(rand() * 190)) } : {}) }
    }
    if (r < 0.80) {
      const verb = pick(['create', 'delete', 'patch'])
      const privileged = verb === 'create' && rand() < 0.05
      return { verb, uri: `/api/v1/namespaces/${ns}/pods${verb === 'create' ? '' : `/${obj}`}`, resource: { resource: 'pods', namespace: ns, ...(verb === 'create' ? {} : { name: obj }), apiVersion: 'v1' }, user: systemUser('replicaset-controller'), userAgent: 'kube-controller-manager/v1.26.1 (linux/amd64) kubernetes/8f94681/system:serviceaccount:kube-system:replicaset-controller', sourceIP: '10.0.0.10', level: 'RequestResponse', code: verb === 'create' ? 201 : 200, ...(verb === 'create' ? { requestObject: podSpec(privileged) } : {}) }
    }
    if (r < 0.86) {
      return { verb: 'patch', uri: `/apis/apps/v1/namespaces/${ns}/deployments/${obj}`, resource: { resource: 'deployments', namespace: ns, name: obj, apiGroup: 'apps', apiVersion: 'v1' }, user: human(), userAgent: 'kubectl/v1.26.1 (linux/amd64) kubernetes/8f94681', sourceIP: '192.168.1.20', level: 'RequestResponse', code: 200, requestObject: { spec: { replicas: 1 + Math.floor(rand() * 5), template: { spec: { containers: [{ name: 'app', image: `registry.example.com/web:${hex(7)}` }] } } } } }
    }
    if (r < 0.90) {
      return { verb: pick(['get', 'list']), uri: `/api/v1/namespaces/${ns}/secrets/${obj}`, resource: { resource: 'secrets', namespace: ns, name: obj, apiVersion: 'v1' }, user: rand() < 0.7 ? systemUser('csi-provisioner') : human(), userAgent: 'kubectl/v1.26.1 (linux/amd64) kubernetes/8f94681', sourceIP: '192.168.1.20', level: 'Metadata', code: 200 }
    }
    if (r < 0.93) {
      const crb = rand() < 0.3
      const admin = rand() < 0.2
      return { verb: 'create', uri: `/apis/rbac.authorization.k8s.io/v1/${crb ? 'clusterrolebindings' : `namespaces/${ns}/rolebindings`}`, resource: { resource: crb ? 'clusterrolebindings' : 'rolebindings', ...(crb ? {} : { namespace: ns }), apiGroup: 'rbac.authorization.k8s.io', apiVersion: 'v1' }, user: human(), userAgent: 'kubectl/v1.26.1 (linux/amd64) kubernetes/8f94681', sourceIP: '192.168.1.20', level: 'RequestResponse', code: 201, requestObject: { kind: crb ? 'ClusterRoleBinding' : 'RoleBinding', apiVersion: 'rbac.authorization.k8s.io/v1', metadata: { name: name('binding') }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: admin ? 'cluster-admin' : 'view' }, subjects: [{ kind: 'User', name: pick(HUMANS) }] } }
    }
    if (r < 0.95) {
      return { verb: 'create', uri: `/api/v1/namespaces/${ns}/pods/${obj}/exec?command=sh&container=app&stdin=true&tty=true`, resource: { resource: 'pods', subresource: 'exec', namespace: ns, name: obj, apiVersion: 'v1' }, user: human(), userAgent: 'kubectl/v1.26.1 (linux/amd64) kubernetes/8f94681', sourceIP: '192.168.1.20', level: 'Metadata', code: 101 }
    }
    if (r < 0.96) {
      return { verb: 'create', uri: `/api/v1/namespaces/${ns}/serviceaccounts/default/token`, resource: { resource: 'serviceaccounts', subresource: 'token', namespace: ns, name: 'default', apiVersion: 'v1' }, user: nodeUser(pick(NODES)), userAgent: 'kubelet/v1.26.1 (linux/amd64) kubernetes/8f94681', sourceIP: '10.0.0.11', level: 'RequestResponse', code: 201, responseObject: { kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1', spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3607 }, status: { token: `eyJhbGciOiJSUzI1NiIsImtpZCI6I${hex(40)}.${hex(300)}.${hex(80)}`, expirationTimestamp: '2026-11-25T11:00:00Z' } } }
    }
    if (r < 0.985) {
      return { verb: pick(['list', 'get', 'delete']), uri: `/api/v1/namespaces/kube-system/secrets`, resource: { resource: 'secrets', namespace: 'kube-system', apiVersion: 'v1' }, user: { username: `system:serviceaccount:${ns}:default`, groups: ['system:serviceaccounts', 'system:authenticated'] }, userAgent: 'curl/8.5.0', sourceIP: `10.244.${Math.floor(rand() * 4)}.${Math.floor(rand() * 250)}`, level: 'Metadata', code: 403, forbidden: true }
    }
    return { verb: 'get', uri: pick(['/healthz', '/version', '/api']), user: { username: 'system:anonymous', groups: ['system:unauthenticated'] }, userAgent: 'curl/8.5.0', sourceIP: `203.0.113.${Math.floor(rand() * 250)}`, level: 'Metadata', code: pick([200, 401, 403]) }
  }

  function render(req: Request, auditID: string, stage: 'RequestReceived' | 'ResponseComplete', received: string, staged: string): string {
    const ev: Record<string, unknown> = {
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: req.level,
      auditID,
      stage,
      requestURI: req.uri,
      verb: req.verb,
      user: req.user,
      sourceIPs: [req.sourceIP],
      userAgent: req.userAgent,
    }
    if (req.resource) ev.objectRef = { ...req.resource }
    if (stage === 'ResponseComplete') {
      ev.responseStatus = req.forbidden
        ? { metadata: {}, status: 'Failure', message: `secrets is forbidden: User "${req.user.username}" cannot ${req.verb} resource "secrets"`, reason: 'Forbidden', details: { kind: 'secrets' }, code: 403 }
        : { metadata: {}, code: req.code }
      if (req.level !== 'Metadata' && req.requestObject) ev.requestObject = req.requestObject
      if (req.level === 'RequestResponse' && req.responseObject) ev.responseObject = req.responseObject
    }
    ev.requestReceivedTimestamp = received
    ev.stageTimestamp = staged
    ev.annotations = stage === 'ResponseComplete'
      ? { 'authorization.k8s.io/decision': req.forbidden ? 'forbid' : 'allow', 'authorization.k8s.io/reason': req.forbidden ? '' : 'RBAC: allowed by ClusterRoleBinding "system:controller" of ClusterRole "system:controller" to ServiceAccount' }
      : undefined
    if (!ev.annotations) delete ev.annotations
    // The apiserver's encoder (Go encoding/json) escapes <, > and & in strings.
    return JSON.stringify(ev).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`)
  }

  return {
    next(nowMs = Date.now()) {
      const held = pendingResponses.shift()
      if (held) return held
      const req = request()
      const id = uuid()
      const received = micro(nowMs - Math.floor(rand() * 3))
      const done = micro(nowMs)
      const mutating = req.verb !== 'get' && req.verb !== 'list' && req.verb !== 'watch'
      if (!mutating) return render(req, id, 'ResponseComplete', received, done)
      // Mutating requests are logged twice: RequestReceived now, ResponseComplete as the next event.
      pendingResponses.push(render(req, id, 'ResponseComplete', received, done))
      return render(req, id, 'RequestReceived', received, received)
    },
  }
}

/** RFC 3339 with microseconds, as the apiserver writes timestamps. */
function micro(ms: number): string {
  return new Date(ms).toISOString().replace('Z', `${String(Math.floor((ms % 1) * 1000)).padStart(3, '0')}Z`)
}
