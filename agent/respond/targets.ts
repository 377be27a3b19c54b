// What each response does, as one API request against the object an audit
// event names: which objects an action applies to, the request's method, path
// and body, and the id of the finding that reports it. Pure: no I/O here.
//
//   delete-pod      DELETE the pod (pods, verb delete), with the pod's uid as a precondition when the
//                   event shows it, so a new pod that took the same name is left alone
//   delete-binding  DELETE the RoleBinding or ClusterRoleBinding (verb delete)
//   scale-to-zero   PATCH the scale subresource of a Deployment, StatefulSet or ReplicaSet to 0 replicas
//                   (deployments/scale..., verb patch): the workload stays for inspection, its pods go
//   quarantine      PATCH the object's metadata: label auditrail.io/quarantine=true (a NetworkPolicy or
//                   admission policy can select on it) and an annotation naming the finding (verb patch)
import type { ResponseAction } from '../config.ts'
import type { AuditEvent } from '../audit/event.ts'

const QUARANTINE_LABEL = 'auditrail.io/quarantine'
const QUARANTINE_ANNOTATION = 'auditrail.io/quarantined-for'
/** The field manager of the responder's patches: `kubectl get -o yaml --show-managed-fields` names it. */
const FIELD_MANAGER = 'auditrail-responder'

/** The id of the finding that reports an action (a dot: no rule or detector id can take it). */
export const RESPONSE_FINDING_IDS: Record<ResponseAction, string> = {
  'delete-pod': 'responder.pod-deleted',
  'delete-binding': 'responder.binding-removed',
  'scale-to-zero': 'responder.workload-scaled-to-zero',
  quarantine: 'responder.object-quarantined',
}

/** For messages: what was done, and what would be. */
export const VERBS: Record<ResponseAction, { done: string; would: string }> = {
  'delete-pod': { done: 'deleted', would: 'would delete' },
  'delete-binding': { done: 'removed', would: 'would remove' },
  'scale-to-zero': { done: 'scaled to zero', would: 'would scale to zero' },
  quarantine: { done: 'quarantined', would: 'would quarantine' },
}

const SCALABLE = new Set(['deployments', 'statefulsets', 'replicasets'])
const BINDINGS = new Set(['rolebindings', 'clusterrolebindings'])

/** One API request of a response. `object` is how people name the target: resource namespace/name. */
export interface ResponseRequest {
  method: 'DELETE' | 'PATCH'
  path: string
  contentType: string
  body: string
  object: string
  namespace: string | undefined
}

/** The cause of a response, written on the object where the action leaves it (quarantine). */
interface Cause {
  ruleId: string
  auditId: string
}

/**
 * The request that carries out `action` on the object of `event`, or undefined
 * when the action does not apply to it (a delete-pod answering a finding about
 * a ClusterRole). Events on a subresource (pods/exec) act on the object itself.
 */
export function responseRequest(action: ResponseAction, event: AuditEvent, cause: Cause): ResponseRequest | undefined {
  const ref = event.objectRef
  const resource = ref?.resource
  // A create with generateName has its name in the response only.
  const name = ref?.name || (ref?.subresource ? undefined : createdName(event))
  if (!resource || !name) return undefined
  const group = ref.apiGroup ?? ''
  const namespace = ref.namespace || undefined
  const object = `${resource} ${namespace ? `${namespace}/` : ''}${name}`
  const base = (version: string) => `${group ? `/apis/${seg(group)}/${seg(version)}` : `/api/${seg(version)}`}${namespace ? `/namespaces/${seg(namespace)}` : ''}/${seg(resource)}/${seg(name)}`
  const patch = (path: string, body: unknown): ResponseRequest => ({ method: 'PATCH', path: `${path}?fieldManager=${FIELD_MANAGER}`, contentType: 'application/merge-patch+json', body: JSON.stringify(body), object, namespace })
  switch (action) {
    case 'delete-pod': {
      if (resource !== 'pods' || group !== '' || !namespace) return undefined
      const uid = ref.subresource ? undefined : uidOf(event, 'Pod')
      const body = { apiVersion: 'v1', kind: 'DeleteOptions', ...(uid ? { preconditions: { uid } } : {}) }
      return { method: 'DELETE', path: base('v1'), contentType: 'application/json', body: JSON.stringify(body), object, namespace }
    }
    case 'delete-binding': {
      if (!BINDINGS.has(resource) || group !== 'rbac.authorization.k8s.io' || ref.subresource) return undefined
      const uid = uidOf(event, resource === 'rolebindings' ? 'RoleBinding' : 'ClusterRoleBinding')
      const body = { apiVersion: 'v1', kind: 'DeleteOptions', ...(uid ? { preconditions: { uid } } : {}) }
      return { method: 'DELETE', path: base('v1'), contentType: 'application/json', body: JSON.stringify(body), object, namespace }
    }
    case 'scale-to-zero':
      if (!SCALABLE.has(resource) || group !== 'apps' || !namespace) return undefined
      return patch(`${base('v1')}/scale`, { spec: { replicas: 0 } })
    case 'quarantine': {
      if (!ref.apiVersion) return undefined
      const reason = `rule ${cause.ruleId}, audit ID ${cause.auditId}`
      return patch(base(ref.apiVersion), { metadata: { labels: { [QUARANTINE_LABEL]: 'true' }, annotations: { [QUARANTINE_ANNOTATION]: reason } } })
    }
  }
}

/** The uid of the object the request left behind, when the event shows it (RequestResponse level). */
function uidOf(event: AuditEvent, kind: string): string | undefined {
  const o = event.responseObject as { kind?: unknown; metadata?: { uid?: unknown } } | undefined
  return o && o.kind === kind && typeof o.metadata?.uid === 'string' ? o.metadata.uid : undefined
}

function createdName(event: AuditEvent): string | undefined {
  const name = (event.responseObject as { metadata?: { name?: unknown } } | undefined)?.metadata?.name
  return typeof name === 'string' && name !== '' ? name : undefined
}

/** A path segment from the audit event: the API server's own names, escaped all the same. */
function seg(s: string): string {
  return encodeURIComponent(s)
}
