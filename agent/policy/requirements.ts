// What Auditrail needs the apiserver to log: for each guardrail rule and
// detector, the verbs and resources it looks at, the level it reads at (a rule
// that reads requestObject needs Request, responseObject needs RequestResponse)
// and the stages it needs.
import type { Level, Stage } from './audit-policy.ts'

export interface ResourceRef {
  /** API group; "" is the core group. */
  group: string
  /** Plural resource name, or "*" for any resource (checked against PROBE_RESOURCES). */
  resource: string
  /** "" for the resource itself. */
  subresource: string
}

export interface Requirement {
  source: 'rule' | 'detector'
  id: string
  /** Why it needs these events, for the report. */
  why: string
  /** Verbs, or ["*"] for every verb. */
  verbs: readonly string[]
  resources: readonly ResourceRef[]
  level: Level
  stages: readonly Stage[]
  /** Only requests by these users, groups or in these namespaces (undefined: any). */
  users?: readonly string[]
  userGroups?: readonly string[]
  namespaces?: readonly string[]
}

export const ALL_VERBS: readonly string[] = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection']
const MUTATING = ['create', 'update', 'patch', 'delete', 'deletecollection']
const CHANGE = ['create', 'update', 'patch', 'delete']
const READ = ['get', 'list', 'watch']

const core = (resource: string, subresource = ''): ResourceRef => ({ group: '', resource, subresource })
const inGroup = (group: string, ...resources: string[]): ResourceRef[] => resources.map((resource) => ({ group, resource, subresource: '' }))
const ANY: ResourceRef[] = [{ group: '*', resource: '*', subresource: '' }]

const RBAC = inGroup('rbac.authorization.k8s.io', 'roles', 'rolebindings', 'clusterroles', 'clusterrolebindings')
const WORKLOADS = [core('pods'), ...inGroup('apps', 'deployments', 'daemonsets', 'statefulsets', 'replicasets'), ...inGroup('batch', 'jobs', 'cronjobs')]
const WEBHOOKS = inGroup('admissionregistration.k8s.io', 'validatingwebhookconfigurations', 'mutatingwebhookconfigurations', 'validatingadmissionpolicies', 'validatingadmissionpolicybindings')
const EXEC = [core('pods', 'exec'), core('pods', 'attach'), core('pods', 'portforward')]
const COMPLETE: Stage[] = ['ResponseComplete']

/** The events the built-in guardrail pack (issue 3) and detectors (issue 4) read. */
export const BUILTIN_REQUIREMENTS: readonly Requirement[] = [
  // Guardrails
  { source: 'rule', id: 'rbac-change', why: 'RBAC rules read the role or binding (wildcards, cluster-admin, escalate/bind/impersonate grants) and the object that results', verbs: CHANGE, resources: RBAC, level: 'RequestResponse', stages: COMPLETE },
  { source: 'rule', id: 'workload-spec', why: 'workload rules read the pod template (privileged, capabilities, hostPath, host namespaces, runAsUser 0) of the request and of the patched result', verbs: ['create', 'update', 'patch'], resources: WORKLOADS, level: 'RequestResponse', stages: COMPLETE },
  { source: 'rule', id: 'workload-lifecycle', why: 'pod create/delete and workload changes, also in kube-system and kube-public', verbs: CHANGE, resources: WORKLOADS, level: 'Metadata', stages: COMPLETE },
  { source: 'rule', id: 'ephemeral-container-added', why: 'ephemeral containers are read from the request', verbs: ['update', 'patch'], resources: [core('pods', 'ephemeralcontainers')], level: 'Request', stages: COMPLETE },
  { source: 'rule', id: 'pod-exec-attach-portforward', why: 'exec, attach and port-forward sessions', verbs: ['create', 'get'], resources: EXEC, level: 'Metadata', stages: COMPLETE },
  { source: 'rule', id: 'secret-read', why: 'secret reads by humans or unexpected identities, cluster-wide secret lists (metadata only: values must never be logged)', verbs: READ, resources: [core('secrets')], level: 'Metadata', stages: COMPLETE },
  { source: 'rule', id: 'serviceaccount-token-created', why: 'TokenRequest calls', verbs: ['create'], resources: [core('serviceaccounts', 'token')], level: 'Metadata', stages: COMPLETE },
  { source: 'rule', id: 'csr-created', why: 'certificate signing requests created', verbs: ['create'], resources: inGroup('certificates.k8s.io', 'certificatesigningrequests'), level: 'Metadata', stages: COMPLETE },
  { source: 'rule', id: 'csr-approved', why: 'approval is read from the request\'s conditions', verbs: ['update', 'patch'], resources: [{ group: 'certificates.k8s.io', resource: 'certificatesigningrequests', subresource: 'approval' }], level: 'Request', stages: COMPLETE },
  { source: 'rule', id: 'network-policy-change', why: 'network policy create/update/delete', verbs: CHANGE, resources: inGroup('networking.k8s.io', 'networkpolicies'), level: 'Metadata', stages: COMPLETE },
  { source: 'rule', id: 'service-exposed', why: 'NodePort and LoadBalancer services are read from the request\'s spec.type', verbs: ['create', 'update', 'patch'], resources: [core('services')], level: 'Request', stages: COMPLETE },
  { source: 'rule', id: 'ingress-without-tls', why: 'the ingress\'s spec.tls is read from the request', verbs: ['create', 'update', 'patch'], resources: inGroup('networking.k8s.io', 'ingresses'), level: 'Request', stages: COMPLETE },
  { source: 'rule', id: 'trail-tampering', why: 'changes to the audit policy\'s ConfigMap and to this agent\'s DaemonSet, ConfigMap and Secret', verbs: CHANGE, resources: [core('configmaps'), core('secrets'), ...inGroup('apps', 'daemonsets')], level: 'Metadata', stages: COMPLETE },
  { source: 'rule', id: 'admission-webhook-change', why: 'webhook and admission policy rules read the changed configuration', verbs: CHANGE, resources: WEBHOOKS, level: 'Request', stages: COMPLETE },
  { source: 'rule', id: 'identity-and-authentication', why: 'anonymous successes and refusals, forbidden humans, system:masters, impersonation and node identities are judged on every request', verbs: ALL_VERBS, resources: ANY, level: 'Metadata', stages: COMPLETE },
  { source: 'rule', id: 'request-source', why: 'the sourceIPs of every request: system identities outside guard.clusterNetworks, addresses in guard.knownBadAddressesFile', verbs: ALL_VERBS, resources: ANY, level: 'Metadata', stages: COMPLETE },
  // Detectors
  { source: 'detector', id: 'forbidden-burst', why: 'counts 403 responses per user and source IP', verbs: ALL_VERBS, resources: ANY, level: 'Metadata', stages: COMPLETE },
  { source: 'detector', id: 'secret-read-burst', why: 'counts secret reads per identity', verbs: READ, resources: [core('secrets')], level: 'Metadata', stages: COMPLETE },
  { source: 'detector', id: 'secret-access-denied-burst', why: 'counts 401, 403 and 404 on secrets per principal and address (a refused token is logged at ResponseStarted only)', verbs: ALL_VERBS, resources: [core('secrets')], level: 'Metadata', stages: ['ResponseStarted', 'ResponseComplete'] },
  { source: 'detector', id: 'delete-burst', why: 'counts deletes per identity', verbs: ['delete', 'deletecollection'], resources: ANY, level: 'Metadata', stages: COMPLETE },
  { source: 'detector', id: 'exec-burst', why: 'counts exec and attach per identity', verbs: ['create', 'get'], resources: EXEC.slice(0, 2), level: 'Metadata', stages: COMPLETE },
  { source: 'detector', id: 'anonymous-burst', why: 'counts anonymous requests', verbs: ALL_VERBS, resources: ANY, level: 'Metadata', stages: COMPLETE, users: ['system:anonymous'] },
  { source: 'detector', id: 'serviceaccount-new-source', why: 'learns the source IPs and user agents of each service account', verbs: ALL_VERBS, resources: ANY, level: 'Metadata', stages: COMPLETE, userGroups: ['system:serviceaccounts'] },
  { source: 'detector', id: 'request-rate-baseline', why: 'keeps a baseline of each identity\'s request rate', verbs: ALL_VERBS, resources: ANY, level: 'Metadata', stages: COMPLETE },
  { source: 'detector', id: 'dropped-event', why: 'pairs RequestReceived with ResponseComplete for mutating requests: an event the apiserver dropped leaves its RequestReceived alone', verbs: MUTATING, resources: ANY, level: 'Metadata', stages: ['RequestReceived', 'ResponseComplete'] },
]

/**
 * Stand-ins for "any resource": the resources the built-in requirements name,
 * plus one custom resource for everything else. A policy that drops any of
 * these hides them from every requirement that watches all requests.
 */
export const PROBE_RESOURCES: readonly ResourceRef[] = [
  core('pods'), core('secrets'), core('configmaps'), core('serviceaccounts'), core('services'), core('namespaces'), core('nodes'),
  ...inGroup('apps', 'deployments', 'daemonsets'),
  ...RBAC,
  ...inGroup('networking.k8s.io', 'networkpolicies'),
  ...inGroup('admissionregistration.k8s.io', 'validatingwebhookconfigurations'),
  { group: 'example.auditrail.dev', resource: 'widgets', subresource: '' },
]

const CLUSTER_SCOPED = new Set([
  'namespaces', 'nodes', 'persistentvolumes', 'clusterroles', 'clusterrolebindings', 'certificatesigningrequests',
  'validatingwebhookconfigurations', 'mutatingwebhookconfigurations', 'validatingadmissionpolicies', 'validatingadmissionpolicybindings',
  'customresourcedefinitions', 'storageclasses', 'priorityclasses', 'tokenreviews', 'subjectaccessreviews', 'selfsubjectaccessreviews',
])

export function isClusterScoped(resource: string): boolean {
  return CLUSTER_SCOPED.has(resource)
}

// Resources a rule may name without apiGroups, and their group.
const KNOWN_GROUPS: ReadonlyMap<string, string> = new Map([
  ...['pods', 'secrets', 'configmaps', 'serviceaccounts', 'services', 'namespaces', 'nodes', 'endpoints', 'events', 'persistentvolumes', 'persistentvolumeclaims', 'replicationcontrollers'].map((r) => [r, ''] as const),
  ...[...WORKLOADS, ...RBAC, ...WEBHOOKS, ...inGroup('networking.k8s.io', 'networkpolicies', 'ingresses'), ...inGroup('certificates.k8s.io', 'certificatesigningrequests'), ...inGroup('monitoring.coreos.com', 'podmonitors', 'prometheusrules')].map((r) => [r.resource, r.group] as const),
])

/** The group of a well-known resource (pods -> "", deployments -> "apps"), or undefined. */
export function knownGroupOf(resource: string): string | undefined {
  return KNOWN_GROUPS.get(resource)
}
