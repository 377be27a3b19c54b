import t from 'tap'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { loadAgentConfig, type RespondConfig } from '../../../agent/config.ts'
import type { RuleFinding } from '../../../agent/guard/rule-set.ts'
import { isSystemIdentity, ResponsePolicies } from '../../../agent/respond/policy.ts'

const NOW = Date.parse('2026-12-07T01:00:00Z')
const config = (patch: Partial<RespondConfig> = {}): RespondConfig => ({
  ...loadAgentConfig({ overrides: { node: 'n', 'collector.url': 'https://c:1' }, env: {} }).respond,
  policies: [{ rules: ['privileged-container'], action: 'delete-pod' }, { rules: ['privileged-container'], action: 'quarantine' }, { minSeverity: 'critical', action: 'quarantine' }],
  ...patch,
})
const finding = (id: string, severity: RuleFinding['severity'] = 'high', details: Record<string, string> = {}): RuleFinding => ({ source: 'rule', id, severity, message: '', auditId: 'a1', details })
const event = (fields: Partial<AuditEvent> = {}): AuditEvent => ({ auditID: 'a1', stage: 'ResponseComplete', verb: 'create', user: { username: 'mallory' }, objectRef: { resource: 'pods', namespace: 'apps', name: 'p', apiVersion: 'v1' }, responseStatus: { code: 201 }, stageTimestamp: new Date(NOW - 1000).toISOString(), ...fields })

t.test('a policy answers the rules it names, or every finding from its severity up; each action once', async (t) => {
  const p = new ResponsePolicies(config())
  t.same(p.actionsFor(finding('privileged-container')), ['delete-pod', 'quarantine'])
  t.same(p.actionsFor(finding('host-pid', 'high')), [], 'high is below critical')
  t.same(p.actionsFor(finding('anything', 'critical')), ['quarantine'])
  t.same(p.actionsFor(finding('privileged-container', 'critical')), ['delete-pod', 'quarantine'], 'quarantine once though two policies name it')
  t.same(p.actionsFor(finding('responder.pod-deleted', 'critical')), [], 'a response never answers a response')
})

t.test('exclusions: the served request of a person or a workload\'s account, recent, outside excluded namespaces', async (t) => {
  const p = new ResponsePolicies(config({ excludeUsers: ['break-glass-*', 'ci'] }))
  const why = (ev: AuditEvent, f = finding('privileged-container'), self?: string) => p.exclusion(f, ev, NOW, self)
  t.equal(why(event()), undefined, 'a user\'s privileged pod in apps: acted on')
  t.equal(why(event({ user: { username: 'system:serviceaccount:apps:deployer' } })), undefined, 'a service account outside kube-system is not the cluster\'s machinery')
  t.equal(why(event({ objectRef: { resource: 'pods', namespace: 'kube-system', name: 'p' } })), 'excluded_namespace')
  t.equal(why(event({ user: { username: 'system:node:cp-1' } })), 'system_identity', 'a node (mirror pods of static pods)')
  t.equal(why(event({ user: { username: 'system:serviceaccount:kube-system:replicaset-controller' } })), 'system_identity', 'a controller')
  t.equal(why(event({ user: { username: 'system:kube-scheduler' } })), 'system_identity')
  t.equal(why(event({ user: { username: 'break-glass-ann' } })), 'excluded_user', 'a prefix')
  t.equal(why(event({ user: { username: 'ci' } })), 'excluded_user')
  t.equal(why(event({ user: { username: 'cia' } })), undefined, 'a name without * is exact')
  t.equal(why(event({ user: { username: 'responder' } }), finding('privileged-container'), 'responder'), 'own_identity')
  t.equal(why(event(), finding('privileged-container', 'high', { blockedAtAdmission: 'true' })), 'blocked_at_admission', 'blocked: nothing was created')
  t.equal(why(event({ responseStatus: { code: 403 } })), 'not_served')
  t.equal(why(event({ stage: 'RequestReceived' })), 'not_served', 'not yet served')
  t.equal(why(event({ stageTimestamp: new Date(NOW - 301_000).toISOString() })), 'too_old', 'older than maxEventAge (5m): a replayed backup')
  t.equal(why(event({ stageTimestamp: undefined })), 'too_old', 'no time: cannot tell it is recent')
  const all = new ResponsePolicies(config({ includeSystemIdentities: true }))
  t.equal(all.exclusion(finding('privileged-container'), event({ user: { username: 'system:node:cp-1' } }), NOW, undefined), undefined, 'includeSystemIdentities: the system identities too')
})

t.test('system identities', async (t) => {
  for (const u of ['system:node:a', 'system:kube-controller-manager', 'system:anonymous', 'system:serviceaccount:kube-system:x']) t.ok(isSystemIdentity(u), u)
  for (const u of ['alice', 'system:serviceaccount:default:x', 'systemd', 'system:serviceaccount:kube-systemx:y']) t.notOk(isSystemIdentity(u), u)
})
