// Generates realistic audit.k8s.io/v1 events: the traffic of a small production
// cluster, shaped like the real kube-apiserver v1.26 output in
// test/fixtures/apiserver-v1.26 (field order, Go's escaping of < > &, omitted
// empty keys, RFC 3339 micro timestamps, both stages per request, lines not in
// time order) under that fixture's audit policy: RequestResponse for pods,
// secrets, RBAC, network policies and deployments, Metadata for the rest.
// Deterministic for a seed, so tests and benchmarks replay the same log.

export interface AuditEventGeneratorOptions {
  seed: number
  /** Virtual clock start (Unix ms) used when next() is called without a time; default 2026-11-24T23:30:00Z. */
  startTimeMs?: number
  /** Nodes in the cluster (one control plane, the rest workers); default 6. */
  nodeCount?: number
  /** Arrival rate of the virtual clock, which moves on by one arrival per event (never behind the `nowMs` given to next()); default 2,900/s as measured on a busy apiserver. Set it to the caller's pace so timestamps follow the wall clock. */
  eventsPerSecond?: number
  /** Cap for the rare huge events (an all-namespace secret list, up to 820 KB as measured); default 1 MiB - 1, under lumberjack's limit. */
  maxEventBytes?: number
  /** Requests after which the attack story (ATTACKER's) is woven into the traffic, one step every few requests; default: no story. */
  attackAfter?: number
}

/** The intruder of the attack story: a contractor's stolen kubeconfig, used from outside the office network. */
export const ATTACKER = { username: 'dave@contractor.example', sourceIP: '203.0.113.45' } as const

export type BadLineKind = 'not-json' | 'invalid-utf8' | 'oversize'

export interface AuditEventGenerator {
  /** The next event, one line of JSON without its newline. The clock moves on by one arrival at `eventsPerSecond`, and to `nowMs` (Unix ms) if that is later. */
  next(nowMs?: number): string
  /** A line the apiserver should never write, for tests only; does not disturb the sequence of next(). `bytes` sizes 'oversize' (default 5 MiB). */
  badLine(kind: BadLineKind, bytes?: number): Buffer
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

type Level = 'Metadata' | 'RequestResponse'
type Stage = 'RequestReceived' | 'ResponseStarted' | 'ResponseComplete'

interface User {
  username?: string
  uid?: string
  groups?: string[]
  extra?: Record<string, string[]>
}

interface ObjectRef {
  resource: string
  namespace?: string
  name?: string
  apiGroup?: string
  apiVersion: string
  subresource?: string
}

/** One API request as the audit backend sees it; bodies are built only when the policy logs them. */
interface Req {
  verb: string
  uri: string
  objectRef?: ObjectRef
  user: User
  sourceIP: string
  userAgent: string
  code: number
  latencyUs: number
  /** Watches and exec: a ResponseStarted event when the stream opens. */
  streaming?: boolean
  /** A 401 never reaches the audit stages of a request: only a ResponseStarted is logged. */
  unauthenticated?: boolean
  failure?: { reason: string; message: string; details: Record<string, string> }
  requestObject?: () => unknown
  responseObject?: () => unknown
  annotations?: Record<string, string>
  authzReason?: string
}

interface Pending {
  dueUs: number
  line: string
}

const KUBE_VERSION = 'v1.26.1'
const GIT = '8f94681'
const PENDING_MAX = 4096
const DEFAULT_START_MS = Date.UTC(2026, 10, 24, 23, 30, 0)

const NAMESPACES = ['default', 'payments', 'frontend', 'monitoring', 'ci', 'ingress-nginx'] as const
const APPS: Record<(typeof NAMESPACES)[number], string[]> = {
  default: ['nginx'],
  payments: ['payments-api', 'ledger', 'settlement-worker'],
  frontend: ['web', 'bff'],
  monitoring: ['prometheus', 'grafana', 'node-exporter'],
  ci: ['runner'],
  'ingress-nginx': ['ingress-nginx-controller'],
}
const CONTROLLERS = ['deployment-controller', 'replicaset-controller', 'endpointslice-controller', 'namespace-controller', 'garbage-collector', 'job-controller', 'daemon-set-controller', 'statefulset-controller']
const HUMANS: User[] = [
  { username: 'alice@example.com', groups: ['platform-admins', 'system:authenticated'] },
  { username: 'bob@example.com', groups: ['developers', 'system:authenticated'] },
  { username: 'carol@example.com', groups: ['sre', 'system:authenticated'] },
]
const KUBECTL = `kubectl/${KUBE_VERSION} (linux/amd64) kubernetes/${GIT}`
const KUBELET = `kubelet/${KUBE_VERSION} (linux/amd64) kubernetes/${GIT}`
const SCHEDULER = `kube-scheduler/${KUBE_VERSION} (linux/amd64) kubernetes/${GIT}/scheduler`
const APISERVER = `kube-apiserver/${KUBE_VERSION} (linux/amd64) kubernetes/${GIT}`
const RBAC_GROUP = 'rbac.authorization.k8s.io'

/** The level the fixture's policy gives a resource, plus token requests at RequestResponse (so tokens appear as a careless policy would log them). */
function policyLevel(ref: ObjectRef | undefined): Level {
  if (!ref) return 'Metadata'
  const group = ref.apiGroup ?? ''
  const r = ref.subresource ? `${ref.resource}/${ref.subresource}` : ref.resource
  if (group === '' && (ref.resource === 'pods' || r === 'secrets' || r === 'serviceaccounts/token')) return 'RequestResponse'
  if (group === RBAC_GROUP || (group === 'networking.k8s.io' && r === 'networkpolicies')) return 'RequestResponse'
  if (group === 'apps' && ref.resource === 'deployments') return 'RequestResponse'
  return 'Metadata'
}

/** Go's encoding/json escapes <, > and & in strings (the apiserver writes `\u0026`). */
function goJSON(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&]/g, (c) => (c === '<' ? '\\u003c' : c === '>' ? '\\u003e' : '\\u0026'))
}

/** RFC 3339 with microseconds, as the apiserver writes event timestamps. */
function microTime(us: number): string {
  return new Date(Math.floor(us / 1000)).toISOString().replace('Z', `${String(us % 1000).padStart(3, '0')}Z`)
}

/** RFC 3339 to the second, as object metadata carries it. */
function secondTime(us: number): string {
  return new Date(Math.floor(us / 1e6) * 1000).toISOString().replace('.000Z', 'Z')
}

export function createAuditEventGenerator(options: AuditEventGeneratorOptions): AuditEventGenerator {
  if (!Number.isSafeInteger(options.seed)) throw new Error(`audit events: seed must be a whole number, got ${String(options.seed)}`)
  const nodeCount = options.nodeCount ?? 6
  if (!Number.isSafeInteger(nodeCount) || nodeCount < 1 || nodeCount > 5000) throw new Error(`audit events: nodeCount must be 1..5000, got ${String(nodeCount)}`)
  const eventsPerSecond = options.eventsPerSecond ?? 2900
  if (!(eventsPerSecond > 0)) throw new Error(`audit events: eventsPerSecond must be above 0, got ${String(eventsPerSecond)}`)
  const maxEventBytes = options.maxEventBytes ?? 1024 * 1024 - 1
  if (!Number.isSafeInteger(maxEventBytes) || maxEventBytes < 16 * 1024) throw new Error(`audit events: maxEventBytes must be a whole number >= 16384, got ${String(maxEventBytes)}`)
  const rand = prng(options.seed)
  let clockUs = Math.round((options.startTimeMs ?? DEFAULT_START_MS) * 1000)
  /** Later stages of requests in flight, sorted by due time; bounded. */
  const pending: Pending[] = []

  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1))
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
  const chance = (p: number) => rand() < p
  const hex = (n: number) => {
    let s = ''
    for (let i = 0; i < n; i++) s += Math.floor(rand() * 16).toString(16)
    return s
  }
  const alnum = (n: number) => {
    const chars = 'bcdfghjklmnpqrstvwxz2456789'
    let s = ''
    for (let i = 0; i < n; i++) s += chars[Math.floor(rand() * chars.length)]
    return s
  }
  const base64 = (bytes: number) => {
    const b = Buffer.allocUnsafe(bytes)
    for (let i = 0; i < bytes; i++) b[i] = Math.floor(rand() * 256)
    return b.toString('base64')
  }
  /** A version-4 UUID drawn from the PRNG. */
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-${(8 + Math.floor(rand() * 4)).toString(16)}${hex(3)}-${hex(12)}`

  // The cluster: fixed for a seed, so names and uids recur as they do in real logs.
  const nodes = Array.from({ length: nodeCount }, (_, i) => ({ name: i === 0 ? 'control-plane-1' : `worker-${i}`, ip: `10.0.${Math.floor(i / 250)}.${(i % 250) + 10}` }))
  const controlPlaneIP = nodes[0]!.ip
  const apiserverUser: User = { username: 'system:apiserver', uid: uuid(), groups: ['system:masters'] }
  const controllerUsers = new Map(CONTROLLERS.map((c) => [c, { username: `system:serviceaccount:kube-system:${c}`, uid: uuid(), groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'] } satisfies User]))
  const deployments = NAMESPACES.flatMap((ns) => APPS[ns].map((app) => ({ ns, app, rs: alnum(10) })))
  const ciDeployer: User = {
    username: 'system:serviceaccount:ci:deployer',
    uid: uuid(),
    groups: ['system:serviceaccounts', 'system:serviceaccounts:ci', 'system:authenticated'],
    extra: { 'authentication.kubernetes.io/pod-name': [`runner-${alnum(10)}-${alnum(5)}`], 'authentication.kubernetes.io/pod-uid': [uuid()] },
  }

  const nodeUser = (node: string): User => ({ username: `system:node:${node}`, groups: ['system:nodes', 'system:authenticated'] })
  const controller = () => {
    const name = pick(CONTROLLERS)
    return { user: controllerUsers.get(name)!, userAgent: `kube-controller-manager/${KUBE_VERSION} (linux/amd64) kubernetes/${GIT}/system:serviceaccount:kube-system:${name}` }
  }
  const human = () => ({ user: pick(HUMANS), userAgent: KUBECTL, sourceIP: `192.168.${int(1, 3)}.${int(10, 200)}` })
  const podIP = () => `10.244.${int(0, nodeCount - 1) % 256}.${int(2, 250)}`
  const podName = (d: { app: string; rs: string }) => `${d.app}-${d.rs}-${alnum(5)}`
  const rv = () => String(int(100_000, 9_999_999))
  const created = () => secondTime(clockUs - int(60, 90 * 86400) * 1_000_000)
  const latency = (lo: number, hi: number) => int(lo * 1000, hi * 1000)

  const managedField = (manager: string, operation: string, apiVersion: string, fields: unknown, subresource?: string) => ({
    manager,
    operation,
    apiVersion,
    time: created(),
    fieldsType: 'FieldsV1',
    fieldsV1: fields,
    ...(subresource ? { subresource } : {}),
  })

  function pod(ns: string, name: string, app: string, node: string, privileged = false) {
    const container = (cname: string) => ({
      name: cname,
      image: `registry.example.com/${ns}/${app}:${hex(7)}`,
      ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
      env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } }, { name: 'LOG_LEVEL', value: 'info' }],
      resources: { limits: { cpu: '500m', memory: '256Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
      volumeMounts: [{ name: `kube-api-access-${alnum(5)}`, readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }, ...(privileged ? [{ name: 'host-root', mountPath: '/host' }] : [])],
      terminationMessagePath: '/dev/termination-log',
      terminationMessagePolicy: 'File',
      imagePullPolicy: 'IfNotPresent',
      securityContext: privileged ? { privileged: true, runAsUser: 0 } : { allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: { drop: ['ALL'] } },
    })
    const containers = [container(app), ...(chance(0.05) ? [container('istio-proxy')] : [])]
    const started = created()
    return {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: {
        name,
        ...(privileged ? {} : { generateName: `${name.slice(0, name.lastIndexOf('-'))}-` }),
        namespace: ns,
        uid: uuid(),
        resourceVersion: rv(),
        creationTimestamp: started,
        labels: { app, 'pod-template-hash': hex(10) },
        ...(privileged ? {} : { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: name.slice(0, name.lastIndexOf('-')), uid: uuid(), controller: true, blockOwnerDeletion: true }] }),
        managedFields: [
          managedField('kube-controller-manager', 'Update', 'v1', { 'f:metadata': { 'f:generateName': {}, 'f:labels': { '.': {}, 'f:app': {}, 'f:pod-template-hash': {} }, 'f:ownerReferences': { '.': {}, [`k:{"uid":"${uuid()}"}`]: {} } }, 'f:spec': { 'f:containers': { [`k:{"name":"${app}"}`]: { '.': {}, 'f:image': {}, 'f:imagePullPolicy': {}, 'f:name': {}, 'f:resources': {} } }, 'f:dnsPolicy': {}, 'f:restartPolicy': {}, 'f:schedulerName': {} } }),
          managedField('kubelet', 'Update', 'v1', { 'f:status': { 'f:conditions': { 'k:{"type":"ContainersReady"}': { '.': {}, 'f:lastProbeTime': {}, 'f:lastTransitionTime': {}, 'f:status': {}, 'f:type': {} }, 'k:{"type":"Ready"}': { '.': {}, 'f:lastProbeTime': {}, 'f:lastTransitionTime': {}, 'f:status': {}, 'f:type': {} } }, 'f:containerStatuses': {}, 'f:hostIP': {}, 'f:phase': {}, 'f:podIP': {}, 'f:podIPs': { '.': {}, [`k:{"ip":"${podIP()}"}`]: { '.': {}, 'f:ip': {} } }, 'f:startTime': {} } }, 'status'),
        ],
      },
      spec: {
        volumes: [
          { name: `kube-api-access-${alnum(5)}`, projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }, { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } }, { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } }], defaultMode: 420 } },
          ...(privileged ? [{ name: 'host-root', hostPath: { path: '/', type: 'Directory' } }] : []),
        ],
        containers,
        restartPolicy: 'Always',
        terminationGracePeriodSeconds: 30,
        dnsPolicy: 'ClusterFirst',
        serviceAccountName: 'default',
        serviceAccount: 'default',
        nodeName: node,
        ...(privileged ? { hostNetwork: true, hostPID: true } : {}),
        securityContext: {},
        schedulerName: 'default-scheduler',
        tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }, { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }],
        priority: 0,
        enableServiceLinks: true,
        preemptionPolicy: 'PreemptLowerPriority',
      },
      status: {
        phase: 'Running',
        conditions: ['Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map((type) => ({ type, status: 'True', lastProbeTime: null, lastTransitionTime: started })),
        hostIP: nodes.find((n) => n.name === node)?.ip ?? controlPlaneIP,
        podIP: podIP(),
        startTime: started,
        containerStatuses: containers.map((c) => ({ name: c.name, state: { running: { startedAt: started } }, lastState: {}, ready: true, restartCount: int(0, 3), image: c.image, imageID: `registry.example.com/${ns}/${app}@sha256:${hex(64)}`, containerID: `containerd://${hex(64)}`, started: true })),
        qosClass: 'Burstable',
      },
    }
  }

  /** An object as its creator submits it: no server-set metadata, no status, a pod not yet scheduled. */
  const submitted = (o: object) => {
    const out: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(o)) {
      if (key === 'metadata') {
        const { uid, resourceVersion, creationTimestamp, generation, managedFields, ...metadata } = value as Record<string, unknown>
        out.metadata = metadata
      } else if (key === 'spec') {
        const { nodeName, ...spec } = value as Record<string, unknown>
        out.spec = spec
      } else if (key !== 'status') {
        out[key] = value
      }
    }
    return out
  }

  const deploymentObject = (d: { ns: string; app: string }) => ({
    kind: 'Deployment',
    apiVersion: 'apps/v1',
    metadata: { name: d.app, namespace: d.ns, uid: uuid(), resourceVersion: rv(), generation: int(2, 40), creationTimestamp: created(), labels: { app: d.app }, annotations: { 'deployment.kubernetes.io/revision': String(int(1, 30)) } },
    spec: {
      replicas: int(1, 6),
      selector: { matchLabels: { app: d.app } },
      template: { metadata: { creationTimestamp: null, labels: { app: d.app } }, spec: { containers: [{ name: d.app, image: `registry.example.com/${d.ns}/${d.app}:${hex(7)}`, resources: { limits: { cpu: '500m', memory: '256Mi' } }, terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File', imagePullPolicy: 'IfNotPresent' }], restartPolicy: 'Always', terminationGracePeriodSeconds: 30, dnsPolicy: 'ClusterFirst', securityContext: {}, schedulerName: 'default-scheduler' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } },
      revisionHistoryLimit: 10,
      progressDeadlineSeconds: 600,
    },
    status: { observedGeneration: int(2, 40), replicas: int(1, 6), updatedReplicas: int(1, 6), readyReplicas: int(1, 6), availableReplicas: int(1, 6), conditions: [{ type: 'Available', status: 'True', lastUpdateTime: created(), lastTransitionTime: created(), reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' }] },
  })

  const secretObject = (ns: string, name: string, dataBytes: number) => ({
    kind: 'Secret',
    apiVersion: 'v1',
    metadata: { name, namespace: ns, uid: uuid(), resourceVersion: rv(), creationTimestamp: created(), managedFields: [managedField('kubectl-create', 'Update', 'v1', { 'f:data': { '.': {}, 'f:password': {}, 'f:username': {} }, 'f:type': {} })] },
    data: { username: Buffer.from(`svc-${alnum(6)}`).toString('base64'), password: base64(dataBytes) },
    type: 'Opaque',
  })

  const list = (kind: string, apiVersion: string, items: unknown[]) => ({ kind: `${kind}List`, apiVersion, metadata: { resourceVersion: rv() }, items })

  const roleObject = (kind: 'Role' | 'ClusterRole', name: string, ns: string | undefined, wildcard: boolean) => ({
    kind,
    apiVersion: `${RBAC_GROUP}/v1`,
    metadata: { name, ...(ns ? { namespace: ns } : {}), uid: uuid(), resourceVersion: rv(), creationTimestamp: created() },
    rules: wildcard
      ? [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }]
      : [{ verbs: ['get', 'list', 'watch'], apiGroups: [''], resources: ['pods', 'services', 'configmaps'] }, { verbs: ['get', 'list', 'watch', 'update', 'patch'], apiGroups: ['apps'], resources: ['deployments', 'replicasets'] }],
  })

  const bindingObject = (kind: 'RoleBinding' | 'ClusterRoleBinding', name: string, ns: string | undefined, role: string, subject: string) => ({
    kind,
    apiVersion: `${RBAC_GROUP}/v1`,
    metadata: { name, ...(ns ? { namespace: ns } : {}), uid: uuid(), resourceVersion: rv(), creationTimestamp: created() },
    subjects: [{ kind: 'User', apiGroup: RBAC_GROUP, name: subject }],
    roleRef: { apiGroup: RBAC_GROUP, kind: 'ClusterRole', name: role },
  })

  const policyObject = (ns: string, name: string) => ({
    kind: 'NetworkPolicy',
    apiVersion: 'networking.k8s.io/v1',
    metadata: { name, namespace: ns, uid: uuid(), resourceVersion: rv(), generation: 1, creationTimestamp: created() },
    spec: { podSelector: { matchLabels: { app: name } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } }], ports: [{ protocol: 'TCP', port: 8080 }] }], policyTypes: ['Ingress'] },
  })

  const core = (resource: string, ns?: string, name?: string, subresource?: string): ObjectRef => ({ resource, ...(ns ? { namespace: ns } : {}), ...(name ? { name } : {}), apiVersion: 'v1', ...(subresource ? { subresource } : {}) })
  const grouped = (apiGroup: string, resource: string, ns?: string, name?: string, subresource?: string): ObjectRef => ({ resource, ...(ns ? { namespace: ns } : {}), ...(name ? { name } : {}), apiGroup, apiVersion: 'v1', ...(subresource ? { subresource } : {}) })
  const path = (ref: ObjectRef) => `${ref.apiGroup ? `/apis/${ref.apiGroup}/${ref.apiVersion}` : `/api/${ref.apiVersion}`}${ref.namespace ? `/namespaces/${ref.namespace}` : ''}/${ref.resource}${ref.name ? `/${ref.name}` : ''}${ref.subresource ? `/${ref.subresource}` : ''}`
  const rbacReason = (binding: string, role: string, subject: string) => `RBAC: allowed by ClusterRoleBinding "${binding}" of ClusterRole "${role}" to ${subject}`

  // Request kinds with their weights: the mix of a production cluster, where
  // leases, controller reads and kubelet status dominate and people are rare.
  const kinds: [number, () => Req][] = [
    [19, () => {
      const node = pick(nodes).name
      const ref = grouped('coordination.k8s.io', 'leases', 'kube-node-lease', node)
      return { verb: 'update', uri: `${path(ref)}?timeout=10s`, objectRef: ref, user: nodeUser(node), sourceIP: nodes.find((n) => n.name === node)!.ip, userAgent: KUBELET, code: 200, latencyUs: latency(1, 6), authzReason: '' }
    }],
    [8, () => {
      const who = pick(['kube-controller-manager', 'kube-scheduler', 'apiserver'])
      const name = who === 'apiserver' ? `kube-apiserver-${alnum(26)}` : who
      const ref = grouped('coordination.k8s.io', 'leases', 'kube-system', name)
      const user: User = who === 'apiserver' ? apiserverUser : { username: `system:${who}`, groups: ['system:authenticated'] }
      const ua = who === 'apiserver' ? APISERVER : `${who}/${KUBE_VERSION} (linux/amd64) kubernetes/${GIT}/leader-election`
      return { verb: pick(['get', 'update']), uri: `${path(ref)}${who === 'apiserver' ? '' : '?timeout=5s'}`, objectRef: ref, user, sourceIP: who === 'apiserver' ? '::1' : controlPlaneIP, userAgent: ua, code: 200, latencyUs: latency(1, 5), authzReason: who === 'apiserver' ? '' : rbacReason(`system:${who}`, `system:${who}`, `User "system:${who}"`) }
    }],
    [16, () => {
      // Reads by controllers and kubelets: configmaps, service accounts, nodes, endpoints, the occasional secret or pod.
      const d = pick(deployments)
      const byKubelet = chance(0.4)
      const node = pick(nodes)
      const resource = byKubelet ? pick(['configmaps', 'secrets', 'pods', 'nodes', 'services']) : pick(['configmaps', 'serviceaccounts', 'endpoints', 'nodes', 'namespaces', 'pods'])
      const ref = resource === 'nodes' ? core('nodes', undefined, node.name) : resource === 'namespaces' ? core('namespaces', undefined, d.ns) : core(resource, d.ns, resource === 'pods' ? podName(d) : resource === 'configmaps' ? pick(['kube-root-ca.crt', `${d.app}-config`]) : resource === 'secrets' ? `${d.app}-credentials` : resource === 'serviceaccounts' ? 'default' : d.app)
      const missing = chance(0.05)
      const c = controller()
      return {
        verb: 'get', uri: path(ref), objectRef: ref,
        ...(byKubelet ? { user: nodeUser(node.name), userAgent: KUBELET, sourceIP: node.ip } : { user: c.user, userAgent: c.userAgent, sourceIP: controlPlaneIP }),
        code: missing ? 404 : 200, latencyUs: latency(1, 8), authzReason: byKubelet ? '' : rbacReason(`system:controller:${c.user.username!.split(':').pop()}`, `system:controller:${c.user.username!.split(':').pop()}`, `ServiceAccount "${c.user.username!.split(':').pop()}/kube-system"`),
        ...(missing ? { failure: { reason: 'NotFound', message: `${resource} "${ref.name}" not found`, details: { name: ref.name ?? '', kind: resource } } } : {}),
        responseObject: () => (resource === 'secrets' ? secretObject(d.ns, ref.name!, int(16, 48)) : resource === 'pods' ? pod(d.ns, ref.name!, d.app, node.name) : undefined),
      }
    }],
    [7, () => {
      // Lists: small ones at Metadata; pod, deployment and secret lists carry their items at RequestResponse.
      const d = pick(deployments)
      const resource = pick(['pods', 'pods', 'deployments', 'secrets', 'services', 'configmaps', 'namespaces', 'nodes', 'replicasets', 'endpointslices'])
      const ref = resource === 'deployments' || resource === 'replicasets' ? grouped('apps', resource, d.ns) : resource === 'endpointslices' ? grouped('discovery.k8s.io', resource, d.ns) : resource === 'nodes' || resource === 'namespaces' ? core(resource) : core(resource, d.ns)
      const h = chance(0.35) ? human() : undefined
      const c = controller()
      const count = resource === 'pods' ? (chance(0.95) ? int(0, 2) : int(3, 12)) : int(1, 6)
      const huge = resource === 'secrets' && chance(0.002)
      return {
        verb: 'list', uri: `${path(ref)}?limit=500${h ? '' : '&resourceVersion=0'}`, objectRef: ref,
        ...(h ?? { user: c.user, userAgent: c.userAgent, sourceIP: controlPlaneIP }),
        code: 200, latencyUs: latency(2, 40), authzReason: h ? '' : rbacReason('system:controller', 'system:controller', `ServiceAccount "${c.user.username!.split(':').pop()}/kube-system"`),
        responseObject: () => {
          if (resource === 'pods') return list('Pod', 'v1', Array.from({ length: count }, () => pod(d.ns, podName(d), d.app, pick(nodes).name)))
          if (resource === 'deployments') return list('Deployment', 'apps/v1', APPS[d.ns].map((app) => deploymentObject({ ns: d.ns, app })))
          // A secret list with a big blob: the 820 KB line measured on a real apiserver.
          if (huge) return list('Secret', 'v1', [secretObject(d.ns, 'big-secret', Math.floor((Math.min(maxEventBytes, int(100_000, 820_000)) - 3000) * 0.75))])
          return list('Secret', 'v1', Array.from({ length: count }, () => secretObject(d.ns, `${pick(APPS[d.ns])}-${alnum(5)}`, int(16, 64))))
        },
      }
    }],
    [4, () => {
      const d = pick(deployments)
      const resource = pick(['pods', 'configmaps', 'secrets', 'services', 'endpointslices', 'nodes'])
      const ref = resource === 'endpointslices' ? grouped('discovery.k8s.io', resource, d.ns) : resource === 'nodes' ? core('nodes') : core(resource, d.ns)
      const node = pick(nodes)
      const secs = int(300, 600)
      // Informers: kubelets and controllers re-open their watches every 5 to 10 minutes.
      const c = controller()
      const who = chance(0.5) ? { user: nodeUser(node.name), userAgent: KUBELET, sourceIP: node.ip, authzReason: '' } : { ...c, sourceIP: controlPlaneIP, authzReason: rbacReason('system:controller', 'system:controller', `ServiceAccount "${c.user.username!.split(':').pop()}/kube-system"`) }
      return { verb: 'watch', uri: `${path(ref)}?allowWatchBookmarks=true&resourceVersion=${rv()}&timeout=${Math.floor(secs / 60)}m${secs % 60}s&timeoutSeconds=${secs}&watch=true`, objectRef: ref, ...who, code: 200, latencyUs: latency(2000, 30_000), streaming: true }
    }],
    [9, () => {
      // Kubelet status updates: the biggest steady stream at RequestResponse.
      const d = pick(deployments)
      const node = pick(nodes)
      const name = podName(d)
      const ref = core('pods', d.ns, name, 'status')
      return { verb: 'patch', uri: path(ref), objectRef: ref, user: nodeUser(node.name), userAgent: KUBELET, sourceIP: node.ip, code: 200, latencyUs: latency(3, 15), authzReason: '', requestObject: () => ({ metadata: { uid: uuid() }, status: { conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: created() }], containerStatuses: [{ name: d.app, ready: true, started: true, restartCount: int(0, 3), state: { running: { startedAt: created() } } }] } }), responseObject: () => pod(d.ns, name, d.app, node.name) }
    }],
    [9, () => {
      const d = pick(deployments)
      const node = pick(nodes)
      const ref = chance(0.5) ? grouped('events.k8s.io', 'events', d.ns) : core('events', d.ns)
      return { verb: 'create', uri: path(ref), objectRef: ref, user: chance(0.6) ? nodeUser(node.name) : controller().user, userAgent: chance(0.6) ? KUBELET : SCHEDULER, sourceIP: node.ip, code: 201, latencyUs: latency(1, 6), authzReason: '' }
    }],
    [4, () => {
      // Pod lifecycle: the replicaset controller creates and deletes, the scheduler binds.
      const d = pick(deployments)
      const node = pick(nodes).name
      const name = podName(d)
      const rs = controllerUsers.get('replicaset-controller')!
      const step = pick(['create', 'binding', 'delete', 'patch'])
      if (step === 'binding') {
        const ref = core('pods', d.ns, name, 'binding')
        return { verb: 'create', uri: path(ref), objectRef: ref, user: { username: 'system:kube-scheduler', groups: ['system:authenticated'] }, userAgent: SCHEDULER, sourceIP: controlPlaneIP, code: 201, latencyUs: latency(2, 10), authzReason: rbacReason('system:kube-scheduler', 'system:kube-scheduler', 'User "system:kube-scheduler"'), requestObject: () => ({ kind: 'Binding', apiVersion: 'v1', metadata: { name, namespace: d.ns, uid: uuid() }, target: { kind: 'Node', name: node } }) }
      }
      const ref = core('pods', d.ns, step === 'create' ? undefined : name)
      let built: ReturnType<typeof pod> | undefined
      const obj = () => (built ??= pod(d.ns, name, d.app, node))
      return { verb: step, uri: path(ref), objectRef: ref, user: rs, userAgent: `kube-controller-manager/${KUBE_VERSION} (linux/amd64) kubernetes/${GIT}/system:serviceaccount:kube-system:replicaset-controller`, sourceIP: controlPlaneIP, code: step === 'create' ? 201 : 200, latencyUs: latency(3, 20), authzReason: rbacReason('system:controller:replicaset-controller', 'system:controller:replicaset-controller', 'ServiceAccount "replicaset-controller/kube-system"'), ...(step === 'create' ? { annotations: { 'pod-security.kubernetes.io/enforce-policy': 'baseline:latest' } } : {}), ...(step === 'delete' ? { requestObject: () => ({ kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { uid: uuid() }, propagationPolicy: 'Background' }) } : { requestObject: step === 'create' ? () => submitted(obj()) : () => ({ metadata: { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${d.app}-${d.rs}`, uid: uuid(), controller: true, blockOwnerDeletion: true }], uid: uuid() } }) }), responseObject: obj }
    }],
    [4, () => {
      // Deployments and their replica sets: rollouts by people and CI, status by the controller.
      const d = pick(deployments)
      const byController = chance(0.6)
      const rs = chance(0.4)
      const ref = grouped('apps', rs ? 'replicasets' : 'deployments', d.ns, rs ? `${d.app}-${d.rs}` : d.app, byController && !rs ? 'status' : undefined)
      const h = human()
      const c = controllerUsers.get(rs ? 'replicaset-controller' : 'deployment-controller')!
      const who = byController ? { user: c, userAgent: `kube-controller-manager/${KUBE_VERSION} (linux/amd64) kubernetes/${GIT}/system:serviceaccount:kube-system:${rs ? 'replicaset' : 'deployment'}-controller`, sourceIP: controlPlaneIP } : chance(0.5) ? h : { user: ciDeployer, userAgent: `argocd-application-controller/${KUBE_VERSION}`, sourceIP: podIP() }
      let built: object | undefined
      const obj = () => (built ??= deploymentObject(d))
      return { verb: byController ? 'update' : 'patch', uri: path(ref), objectRef: ref, ...who, code: 200, latencyUs: latency(3, 25), authzReason: byController ? rbacReason('system:controller:deployment-controller', 'system:controller:deployment-controller', 'ServiceAccount "deployment-controller/kube-system"') : '', requestObject: byController ? obj : () => ({ spec: { template: { spec: { containers: [{ name: d.app, image: `registry.example.com/${d.ns}/${d.app}:${hex(7)}` }] } } } }), responseObject: obj }
    }],
    [2, () => {
      const d = pick(deployments)
      const create = chance(0.3)
      const ref = core('configmaps', d.ns, create ? undefined : `${d.app}-config`)
      const who = chance(0.5) ? human() : { user: ciDeployer, userAgent: 'helm/v3.13.2', sourceIP: podIP() }
      return { verb: create ? 'create' : 'update', uri: path(ref), objectRef: ref, ...who, code: create ? 201 : 200, latencyUs: latency(2, 12), authzReason: '' }
    }],
    [5, () => {
      const d = pick(deployments)
      const ref = grouped('discovery.k8s.io', 'endpointslices', d.ns, `${d.app}-${alnum(5)}`)
      const c = controllerUsers.get('endpointslice-controller')!
      return { verb: 'update', uri: path(ref), objectRef: ref, user: c, userAgent: `kube-controller-manager/${KUBE_VERSION} (linux/amd64) kubernetes/${GIT}/system:serviceaccount:kube-system:endpointslice-controller`, sourceIP: controlPlaneIP, code: 200, latencyUs: latency(2, 10), authzReason: rbacReason('system:controller:endpointslice-controller', 'system:controller:endpointslice-controller', 'ServiceAccount "endpointslice-controller/kube-system"') }
    }],
    [1.5, () => {
      // RBAC: mostly reads; sometimes a change, rarely a cluster-admin binding or a wildcard role.
      const h = human()
      const ns = pick(NAMESPACES)
      const cluster = chance(0.5)
      const binding = chance(0.5)
      const resource = `${cluster ? 'cluster' : ''}${binding ? 'rolebindings' : 'roles'}`
      const verb = pick(['get', 'list', 'create', 'create', 'update', 'delete'])
      const name = verb === 'list' || verb === 'create' ? undefined : `${h.user.username!.split('@')[0]}-${binding ? 'binding' : 'role'}-${alnum(4)}`
      const ref = grouped(RBAC_GROUP, resource, cluster ? undefined : ns, name)
      const objName = name ?? `${ns}-${binding ? 'binding' : 'role'}-${alnum(4)}`
      const admin = binding && chance(0.25)
      const wildcard = !binding && chance(0.25)
      const make = (objectName: string) => binding
        ? bindingObject(cluster ? 'ClusterRoleBinding' : 'RoleBinding', objectName, cluster ? undefined : ns, admin ? 'cluster-admin' : 'view', pick(HUMANS).username!)
        : roleObject(cluster ? 'ClusterRole' : 'Role', objectName, cluster ? undefined : ns, wildcard)
      let built: object | undefined
      const obj = () => (built ??= make(objName))
      return {
        verb, uri: path(ref), objectRef: ref, ...h, code: verb === 'create' ? 201 : 200, latencyUs: latency(2, 15), authzReason: '',
        ...(verb === 'create' ? { requestObject: () => submitted(obj()) } : verb === 'update' ? { requestObject: obj } : {}),
        responseObject: verb === 'list' ? () => list(binding ? (cluster ? 'ClusterRoleBinding' : 'RoleBinding') : cluster ? 'ClusterRole' : 'Role', `${RBAC_GROUP}/v1`, Array.from({ length: int(2, 8) }, (_, i) => make(`${objName}-${i}`))) : obj,
      }
    }],
    [1.5, () => {
      // Secrets read by people and CI: at RequestResponse, so their base64 data is in the log.
      const d = pick(deployments)
      const get = chance(0.7)
      const ref = core('secrets', d.ns, get ? `${d.app}-credentials` : undefined)
      const who = chance(0.6) ? human() : { user: ciDeployer, userAgent: 'helm/v3.13.2', sourceIP: podIP() }
      return { verb: get ? 'get' : 'list', uri: path(ref), objectRef: ref, ...who, code: 200, latencyUs: latency(2, 10), authzReason: '', responseObject: () => (get ? secretObject(d.ns, ref.name!, int(16, 96)) : list('Secret', 'v1', Array.from({ length: int(1, 5) }, () => secretObject(d.ns, `${d.app}-${alnum(5)}`, int(16, 64))))) }
    }],
    [0.4, () => {
      const d = pick(deployments)
      const ref = core('pods', d.ns, podName(d), 'exec')
      return { verb: 'create', uri: `${path(ref)}?command=%2Fbin%2Fsh&container=${d.app}&stdin=true&stdout=true&tty=true`, objectRef: ref, ...human(), code: 101, latencyUs: latency(5_000, 120_000), streaming: true, authzReason: '' }
    }],
    [3, () => {
      // Kubelets fetch projected service-account tokens; the token is in the response.
      const d = pick(deployments)
      const node = pick(nodes)
      const ref = core('serviceaccounts', d.ns, 'default', 'token')
      const token = `eyJhbGciOiJSUzI1NiIsImtpZCI6I${base64(30).replace(/[+/=]/g, 'x')}.${base64(420).replace(/[+/=]/g, 'x')}.${base64(256).replace(/[+/=]/g, 'x')}`
      return { verb: 'create', uri: path(ref), objectRef: ref, user: nodeUser(node.name), userAgent: KUBELET, sourceIP: node.ip, code: 201, latencyUs: latency(2, 8), authzReason: '', responseObject: () => ({ kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1', metadata: { name: 'default', namespace: d.ns, creationTimestamp: null }, spec: { audiences: ['https://kubernetes.default.svc.cluster.local'], expirationSeconds: 3607, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: podName(d), uid: uuid() } }, status: { token, expirationTimestamp: secondTime(clockUs + 3607 * 1e6) } }) }
    }],
    [0.15, () => {
      // A privileged pod with the host's root filesystem, created by a person.
      const ns = pick(NAMESPACES)
      const name = `debug-${alnum(5)}`
      const ref = core('pods', ns)
      let built: ReturnType<typeof pod> | undefined
      const obj = () => (built ??= pod(ns, name, 'debug', pick(nodes).name, true))
      return { verb: 'create', uri: `${path(ref)}?fieldManager=kubectl-run`, objectRef: ref, ...human(), code: 201, latencyUs: latency(5, 30), authzReason: '', annotations: { 'pod-security.kubernetes.io/enforce-policy': 'privileged:latest' }, requestObject: () => submitted(obj()), responseObject: obj }
    }],
    [0.6, () => {
      const d = pick(deployments)
      const verb = pick(['get', 'list', 'create', 'update', 'delete'])
      const ref = grouped('networking.k8s.io', 'networkpolicies', d.ns, verb === 'list' || verb === 'create' ? undefined : d.app)
      let built: object | undefined
      const obj = () => (built ??= policyObject(d.ns, d.app))
      return { verb, uri: path(ref), objectRef: ref, ...human(), code: verb === 'create' ? 201 : 200, latencyUs: latency(2, 10), authzReason: '', ...(verb === 'create' ? { requestObject: () => submitted(obj()) } : verb === 'update' ? { requestObject: obj } : {}), responseObject: verb === 'list' ? () => list('NetworkPolicy', 'networking.k8s.io/v1', [obj()]) : obj }
    }],
    [0.8, () => {
      // Forbidden: a workload's service account or a developer reaching for what it may not.
      const ns = pick(NAMESPACES)
      const who = chance(0.5) ? { user: { username: `system:serviceaccount:${ns}:default`, uid: uuid(), groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'] }, userAgent: 'curl/8.5.0', sourceIP: podIP() } : { ...human(), user: HUMANS[1]! }
      const [resource, verb, group] = pick([['secrets', 'list', ''], ['secrets', 'get', ''], ['pods', 'create', ''], ['clusterrolebindings', 'create', RBAC_GROUP], ['nodes', 'list', '']] as const)
      const clusterScoped = resource === 'clusterrolebindings' || resource === 'nodes'
      const name = verb === 'get' ? 'db-credentials' : undefined
      const ref = group ? grouped(group, resource, undefined, name) : core(resource, clusterScoped ? undefined : 'kube-system', name)
      const scope = clusterScoped ? 'at the cluster scope' : 'in the namespace "kube-system"'
      return { verb, uri: path(ref), objectRef: ref, ...who, code: 403, latencyUs: latency(1, 4), failure: { reason: 'Forbidden', message: `${resource}${name ? ` "${name}"` : ''} is forbidden: User "${who.user.username}" cannot ${verb} resource "${resource}" in API group "${group}" ${scope}`, details: { ...(name ? { name } : {}), ...(group ? { group } : {}), kind: resource } } }
    }],
    [0.6, () => {
      // Anonymous: health probes pass; discovery is forbidden.
      const uri = pick(['/healthz', '/livez', '/readyz', '/version', '/api', '/apis'])
      const allowed = uri !== '/api' && uri !== '/apis'
      return { verb: 'get', uri, user: { username: 'system:anonymous', groups: ['system:unauthenticated'] }, sourceIP: pick([`203.0.113.${int(1, 254)}`, controlPlaneIP]), userAgent: pick(['kube-probe/1.26', 'curl/8.5.0', 'Go-http-client/1.1']), code: allowed ? 200 : 403, latencyUs: latency(0.2, 3), authzReason: allowed ? rbacReason('system:public-info-viewer', 'system:public-info-viewer', 'Group "system:unauthenticated"') : '', ...(allowed ? {} : { failure: { reason: 'Forbidden', message: `forbidden: User "system:anonymous" cannot get path "${uri}"`, details: {} } }) }
    }],
    [0.15, () => ({ verb: 'list', uri: `/api/v1/namespaces/${pick(NAMESPACES)}/secrets`, user: {}, sourceIP: `198.51.100.${int(1, 254)}`, userAgent: 'python-requests/2.31.0', code: 401, latencyUs: latency(0.2, 2), unauthenticated: true, failure: { reason: 'Unauthorized', message: 'Unauthorized', details: {} } })],
  ]
  // The attack story: probing what the stolen credential may do (a burst of 403s), a secret read where it may read,
  // a privileged pod with the node's root filesystem, a shell in it, then cluster-admin for itself and every secret.
  // Built only when asked for: its names draw on the PRNG, and every other log of a seed stays as it was.
  const attackStory = (): Array<() => Req> => {
    const attacker: User = { username: ATTACKER.username, groups: ['contractors', 'system:authenticated'] }
    const intruder = { user: attacker, userAgent: KUBECTL, sourceIP: ATTACKER.sourceIP }
    const shell = `node-shell-${alnum(5)}`
    const probes = [['secrets', 'list', ''], ['nodes', 'list', ''], ['clusterrolebindings', 'create', RBAC_GROUP], ['pods', 'create', ''], ['secrets', 'get', '']] as const
    return [
      ...Array.from({ length: 22 }, (_, i) => () => {
        const [resource, verb, group] = probes[i % probes.length]!
        const clusterScoped = resource === 'clusterrolebindings' || resource === 'nodes'
        const name = verb === 'get' ? 'kubeadm-certs' : undefined
        const ref = group ? grouped(group, resource, undefined, name) : core(resource, clusterScoped ? undefined : 'kube-system', name)
        const scope = clusterScoped ? 'at the cluster scope' : 'in the namespace "kube-system"'
        return { verb, uri: path(ref), objectRef: ref, ...intruder, code: 403, latencyUs: latency(1, 4), failure: { reason: 'Forbidden', message: `${resource}${name ? ` "${name}"` : ''} is forbidden: User "${ATTACKER.username}" cannot ${verb} resource "${resource}" in API group "${group}" ${scope}`, details: { ...(name ? { name } : {}), ...(group ? { group } : {}), kind: resource } } }
      }),
      () => {
        const ref = core('secrets', 'payments', 'ledger-credentials')
        return { verb: 'get', uri: path(ref), objectRef: ref, ...intruder, code: 200, latencyUs: latency(2, 8), authzReason: '', responseObject: () => secretObject('payments', 'ledger-credentials', 48) }
      },
      () => {
        const ref = core('pods', 'payments')
        let built: ReturnType<typeof pod> | undefined
        const obj = () => (built ??= pod('payments', shell, 'node-shell', 'control-plane-1', true))
        return { verb: 'create', uri: `${path(ref)}?fieldManager=kubectl-run`, objectRef: ref, ...intruder, code: 201, latencyUs: latency(5, 30), authzReason: '', requestObject: () => submitted(obj()), responseObject: obj }
      },
      () => {
        const ref = core('pods', 'payments', shell, 'exec')
        return { verb: 'create', uri: `${path(ref)}?command=%2Fbin%2Fsh&container=node-shell&stdin=true&stdout=true&tty=true`, objectRef: ref, ...intruder, code: 101, latencyUs: latency(5_000, 30_000), streaming: true, authzReason: '' }
      },
      () => {
        const ref = grouped(RBAC_GROUP, 'clusterrolebindings')
        let built: object | undefined
        const obj = () => (built ??= bindingObject('ClusterRoleBinding', 'contractor-admin', undefined, 'cluster-admin', ATTACKER.username))
        return { verb: 'create', uri: path(ref), objectRef: ref, ...intruder, code: 201, latencyUs: latency(3, 12), authzReason: '', requestObject: () => submitted(obj()), responseObject: obj }
      },
      () => {
        const ref = core('secrets')
        return { verb: 'list', uri: path(ref), objectRef: ref, ...intruder, code: 200, latencyUs: latency(20, 80), authzReason: rbacReason('contractor-admin', 'cluster-admin', `User "${ATTACKER.username}"`), responseObject: () => list('Secret', 'v1', deployments.slice(0, 6).map((d) => secretObject(d.ns, `${d.app}-credentials`, 32))) }
      },
    ]
  }
  const attackAfter = options.attackAfter ?? Infinity
  const story = options.attackAfter === undefined ? [] : attackStory()
  if (options.attackAfter !== undefined && (!Number.isSafeInteger(attackAfter) || attackAfter < 0)) throw new Error(`audit events: attackAfter must be a whole number >= 0, got ${String(attackAfter)}`)
  let requests = 0

  const totalWeight = kinds.reduce((sum, [w]) => sum + w, 0)
  const request = (): Req => {
    // One story step every 40th request once it began: spread among the traffic, not a block of its own.
    const step = (requests++ - attackAfter) / 40
    if (Number.isInteger(step) && step >= 0 && step < story.length) return story[step]!()
    let r = rand() * totalWeight
    for (const [w, make] of kinds) {
      r -= w
      if (r < 0) return make()
    }
    return kinds[0]![1]()
  }

  /** One stage of a request, fields in the Go struct's order, empty keys omitted. */
  function render(req: Req, auditID: string, stage: Stage, receivedUs: number, stageUs: number): string {
    const level = req.unauthenticated ? 'Metadata' : policyLevel(req.objectRef)
    const ev: Record<string, unknown> = { kind: 'Event', apiVersion: 'audit.k8s.io/v1', level, auditID, stage, requestURI: req.uri, verb: req.verb, user: req.user, sourceIPs: [req.sourceIP], userAgent: req.userAgent }
    if (req.objectRef && !req.unauthenticated) ev.objectRef = req.objectRef
    if (stage !== 'RequestReceived') {
      ev.responseStatus = req.failure ? { metadata: {}, status: 'Failure', message: req.failure.message, reason: req.failure.reason, details: req.failure.details, code: req.code } : { metadata: {}, code: req.code }
      if (stage === 'ResponseComplete' && level === 'RequestResponse' && !req.failure) {
        const requestObject = req.requestObject?.()
        if (requestObject !== undefined) ev.requestObject = requestObject
        const responseObject = req.responseObject?.()
        if (responseObject !== undefined) ev.responseObject = responseObject
      }
    }
    ev.requestReceivedTimestamp = microTime(receivedUs)
    ev.stageTimestamp = microTime(stageUs)
    if (stage !== 'RequestReceived' && !req.unauthenticated) {
      ev.annotations = { 'authorization.k8s.io/decision': req.failure?.reason === 'Forbidden' ? 'forbid' : 'allow', 'authorization.k8s.io/reason': req.authzReason ?? '', ...req.annotations }
    }
    return goJSON(ev)
  }

  function schedule(p: Pending): void {
    let lo = 0
    let hi = pending.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (pending[mid]!.dueUs <= p.dueUs) lo = mid + 1
      else hi = mid
    }
    pending.splice(lo, 0, p)
  }

  const badRand = prng(options.seed ^ 0x5bd1e995)
  const meanGapUs = 1e6 / eventsPerSecond

  return {
    next(nowMs) {
      // Arrivals evenly spread around the mean: the clock keeps close to a caller writing at eventsPerSecond.
      clockUs = Math.max(clockUs + Math.max(1, Math.round(meanGapUs * (0.5 + rand()))), nowMs === undefined ? 0 : Math.round(nowMs * 1000))
      const due = pending[0]
      // A full queue gives out its earliest stage early rather than losing it.
      if (due && (due.dueUs <= clockUs || pending.length >= PENDING_MAX - 2)) return pending.shift()!.line
      const req = request()
      const auditID = uuid()
      const receivedUs = clockUs
      if (req.unauthenticated) return render(req, auditID, 'ResponseStarted', receivedUs, receivedUs + req.latencyUs)
      if (req.streaming) {
        const startedUs = receivedUs + int(200, 2000)
        schedule({ dueUs: startedUs, line: render(req, auditID, 'ResponseStarted', receivedUs, startedUs) })
      }
      const doneUs = receivedUs + req.latencyUs
      schedule({ dueUs: doneUs, line: render(req, auditID, 'ResponseComplete', receivedUs, doneUs) })
      return render(req, auditID, 'RequestReceived', receivedUs, receivedUs)
    },

    badLine(kind, bytes = 5 * 1024 * 1024) {
      const id = () => Math.floor(badRand() * 0xffffffff).toString(16).padStart(8, '0')
      const stamp = microTime(clockUs)
      if (kind === 'not-json') return Buffer.from(`E1125 ${stamp} audit: {"kind":"Event","auditID":"${id()}" log line cut by a crash`)
      if (kind === 'invalid-utf8') {
        const [head, tail] = [`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"${id()}-0000-4000-8000-000000000000","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"`, `"},"sourceIPs":["10.0.0.10"],"userAgent":"curl/8.5.0","requestReceivedTimestamp":"${stamp}","stageTimestamp":"${stamp}"}`]
        return Buffer.concat([Buffer.from(head), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from(tail)])
      }
      const head = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"${id()}-0000-4000-8000-000000000000","stage":"ResponseComplete","requestURI":"/api/v1/secrets","verb":"list","user":{"username":"system:apiserver","groups":["system:masters"]},"sourceIPs":["127.0.0.1"],"userAgent":"${APISERVER}","objectRef":{"resource":"secrets","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"responseObject":{"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"huge","namespace":"default"},"data":{"blob":"`
      const tail = `"}}]},"requestReceivedTimestamp":"${stamp}","stageTimestamp":"${stamp}"}`
      const fill = bytes - Buffer.byteLength(head) - Buffer.byteLength(tail)
      if (fill < 0) throw new Error(`audit events: an oversize line needs at least ${bytes - fill} bytes, got ${bytes}`)
      return Buffer.concat([Buffer.from(head), Buffer.alloc(fill, 'A'), Buffer.from(tail)])
    },
  }
}
