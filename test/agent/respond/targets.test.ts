import t from 'tap'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { responseRequest } from '../../../agent/respond/targets.ts'

const cause = { ruleId: 'privileged-container', auditId: 'a1' }
const ev = (objectRef: AuditEvent['objectRef'], responseObject?: unknown): AuditEvent => ({ auditID: 'a1', stage: 'ResponseComplete', verb: 'create', user: { username: 'u' }, objectRef, responseObject })

t.test('each action applies to its objects only, as one request', async (t) => {
  const pod = ev({ resource: 'pods', namespace: 'apps', name: 'p', apiVersion: 'v1' }, { kind: 'Pod', metadata: { uid: 'u-1' } })
  const del = responseRequest('delete-pod', pod, cause)!
  t.same([del.method, del.path, JSON.parse(del.body), del.object], ['DELETE', '/api/v1/namespaces/apps/pods/p', { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: 'u-1' } }, 'pods apps/p'], 'the pod, only if it is still the one created')
  const exec = responseRequest('delete-pod', ev({ resource: 'pods', subresource: 'exec', namespace: 'apps', name: 'p', apiVersion: 'v1' }, { kind: 'Status' }), cause)!
  t.same([exec.path, JSON.parse(exec.body).preconditions], ['/api/v1/namespaces/apps/pods/p', undefined], 'exec into a pod: the pod itself, no uid known')
  t.equal(responseRequest('delete-pod', ev({ resource: 'deployments', apiGroup: 'apps', namespace: 'apps', name: 'd', apiVersion: 'v1' }), cause), undefined, 'not a pod')
  const crb = responseRequest('delete-binding', ev({ resource: 'clusterrolebindings', apiGroup: 'rbac.authorization.k8s.io', name: 'b', apiVersion: 'v1' }), cause)!
  t.same([crb.method, crb.path, crb.object], ['DELETE', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/b', 'clusterrolebindings b'])
  t.match(responseRequest('delete-binding', ev({ resource: 'rolebindings', apiGroup: 'rbac.authorization.k8s.io', namespace: 'apps', name: 'b', apiVersion: 'v1' }), cause)!.path, '/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/b')
  t.equal(responseRequest('delete-binding', ev({ resource: 'clusterroles', apiGroup: 'rbac.authorization.k8s.io', name: 'r', apiVersion: 'v1' }), cause), undefined, 'a role is not a binding')
  const scale = responseRequest('scale-to-zero', ev({ resource: 'statefulsets', apiGroup: 'apps', namespace: 'apps', name: 's', apiVersion: 'v1' }), cause)!
  t.same([scale.method, scale.path, JSON.parse(scale.body), scale.contentType], ['PATCH', '/apis/apps/v1/namespaces/apps/statefulsets/s/scale?fieldManager=auditrail-responder', { spec: { replicas: 0 } }, 'application/merge-patch+json'])
  t.equal(responseRequest('scale-to-zero', ev({ resource: 'daemonsets', apiGroup: 'apps', namespace: 'apps', name: 'd', apiVersion: 'v1' }), cause), undefined, 'a DaemonSet has no scale')
  const q = responseRequest('quarantine', ev({ resource: 'cronjobs', apiGroup: 'batch', namespace: 'apps', name: 'c', apiVersion: 'v1' }), cause)!
  t.same([q.path, JSON.parse(q.body)], ['/apis/batch/v1/namespaces/apps/cronjobs/c?fieldManager=auditrail-responder', { metadata: { labels: { 'auditrail.io/quarantine': 'true' }, annotations: { 'auditrail.io/quarantined-for': 'rule privileged-container, audit ID a1' } } }], 'labelled, and annotated with its cause')
  t.equal(responseRequest('quarantine', ev({ resource: 'pods', namespace: 'apps' }), cause), undefined, 'no name: nothing to act on')
  t.equal(responseRequest('delete-pod', ev({ resource: 'pods', namespace: 'apps', apiVersion: 'v1' }, { kind: 'Pod', metadata: { name: 'web-x7k2p', uid: 'u-2' } }), cause)!.path, '/api/v1/namespaces/apps/pods/web-x7k2p', 'generateName: the name the response shows')
  t.equal(responseRequest('delete-pod', ev({ resource: 'pods', namespace: 'a/../b', name: 'p?x', apiVersion: 'v1' }), cause)!.path, '/api/v1/namespaces/a%2F..%2Fb/pods/p%3Fx', 'names are path segments, escaped')
})
