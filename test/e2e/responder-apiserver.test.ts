// Responders on a real kube-apiserver (v1.36, the runner in ../shared/tools/kube-apiserver): the agent
// tails the API server's own audit log and answers privileged-container with delete-pod, through the API
// server, under the responder's token and the shipped ClusterRole (manifests/responder/). A privileged
// pod a user creates is deleted, and the audit log shows the delete as the responder's; the same pod in
// an excluded namespace is left alone; in dry run the pod stays and a "would delete" finding arrives.
// The other actions, each with only its shipped role: a ClusterRoleBinding to cluster-admin removed, a
// privileged Deployment scaled to zero, a hostPID pod labelled for quarantine (and the responder's own
// patch not answered again). A request the rule's admission policy refuses is a finding marked "also
// blocked at admission", and gets no response. The response findings reach the collector, linked to
// the finding that caused them.
//
// Needs what test/e2e/kube-apiserver.ts names; skipped, saying which is missing, without it.
// (No kubelet or controllers run: pods stay Pending, which is no matter for a delete.)
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { decodeAuditLine, type AuditEvent } from '../../agent/audit/event.ts'
import type { AuditAgent } from '../../agent/agent.ts'
import type { RespondConfig } from '../../agent/config.ts'
import { admissionPolicies } from '../../agent/guard/admission.ts'
import { BUILTIN_RULES_DIR, loadRuleSet } from '../../agent/guard/rule-set.ts'
import { agentRig, exportRecords } from '../agent/agent-rig.ts'
import { missing, startKubeApiserver, type KubeApiserver } from './kube-apiserver.ts'

const TOKENS = { admin: 'a'.repeat(32), mallory: 'm'.repeat(32), responder: 'r'.repeat(32) }
const RESPONDER = 'auditrail-responder'
const NS = 'apps'

type Finding = { id: string; auditId: string; message: string; details: Record<string, string> }

const privilegedPod = (name: string, namespace: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec: { containers: [{ name: 'c', image: 'busybox:1.36', securityContext: { privileged: true } }] } })

/** The findings the collector holds (export --records). */
async function findings(store: string): Promise<Finding[]> {
  return (await exportRecords(store)).filter((l) => l.startsWith('#auditrail ')).map((l) => JSON.parse(l.slice('#auditrail '.length))).filter((r) => r.kind === 'finding')
}

/** The API server's audit log, rotated backups included, at ResponseComplete. */
function auditEvents(api: KubeApiserver): AuditEvent[] {
  const dir = dirname(api.auditLog)
  const out: AuditEvent[] = []
  for (const file of readdirSync(dir)) {
    const bytes = readFileSync(join(dir, file))
    for (const line of (file.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8').split('\n')) {
      if (!line) continue
      const d = decodeAuditLine(Buffer.from(line))
      if ('event' in d && d.event.stage === 'ResponseComplete') out.push(d.event)
    }
  }
  return out
}

if (missing.length > 0) {
  t.test('responders on a real kube-apiserver', { skip: `missing: ${missing.join('; ')}` }, () => {})
} else {
  t.test('responders on kube-apiserver v1.36: each action, exclusions, dry run, and requests blocked at admission', { timeout: 240_000 }, async (t) => {
    const api = await startKubeApiserver(t, `${TOKENS.admin},admin,admin-uid,"system:masters"\n${TOKENS.mallory},mallory,mallory-uid,"system:masters"\n${TOKENS.responder},${RESPONDER},responder-uid\n`)
    const must = async (token: string, method: string, path: string, body?: unknown) => {
      const r = await api.send(token, method, path, body)
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text.slice(0, 300)}`)
      return r
    }
    await must(TOKENS.admin, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } })
    for (const ns of [NS, 'kube-system']) await must(TOKENS.admin, 'POST', `/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } })
    // The shipped role for delete-pod, bound to the responder's user: it needs nothing more.
    const grant = async (action: string) => {
      const role = parseAllDocuments(readFileSync(new URL(`../../manifests/responder/rbac-${action}.yaml`, import.meta.url), 'utf8')).map((d) => d.toJS()).find((o) => o.kind === 'ClusterRole')
      await must(TOKENS.admin, 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', role)
      await must(TOKENS.admin, 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: role.metadata.name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: RESPONDER }] })
    }
    await grant('delete-pod')
    t.equal((await api.send(TOKENS.responder, 'GET', `/api/v1/namespaces/${NS}/pods`)).status, 403, 'the responder may delete pods, not even list them')

    const podStatus = async (ns: string, name: string) => (await api.send(TOKENS.admin, 'GET', `/api/v1/namespaces/${ns}/pods/${name}`)).status
    /**
     * Waits for `check`, reading the pod list meanwhile: a response's finding rides with the next event the
     * agent reads, and these reads are events too (a quiet API server logs few).
     */
    const until = async (what: string, check: () => Promise<boolean>) => {
      for (let i = 0; i < 150; i++) {
        if (await check()) return
        await api.send(TOKENS.admin, 'GET', `/api/v1/namespaces/${NS}/pods`)
        await new Promise((r) => setTimeout(r, 200))
      }
      throw new Error(`timed out (30 s) waiting for ${what}`)
    }
    const startAgent = async (dryRun: boolean, policies: RespondConfig['policies'] = [{ rules: ['privileged-container'], action: 'delete-pod' }]) => {
      const tokenFile = join(api.dir, 'responder.token')
      writeFileSync(tokenFile, TOKENS.responder, { mode: 0o600 })
      const rig = await agentRig(t, (c) => {
        c.tail.path = api.auditLog
        c.tail.startAt = 'end'
        c.respond = { ...c.respond, enabled: true, dryRun, policies, rateLimit: { perMinute: 60, burst: 10 }, apiServer: { url: api.url, caFile: api.caFile, tokenFile, timeoutMs: 5000 } }
      })
      const agent = await rig.start()
      return { rig, agent }
    }
    const count = async (agent: AuditAgent, metric: 'responses' | 'responsesSkipped', labels: Record<string, string>) =>
      (await agent.metrics[metric].get()).values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0)

    await t.test('acting: the privileged pod is deleted under the responder\'s identity; kube-system is left alone', async (t) => {
      const { rig, agent } = await startAgent(false)
      const excluded = await must(TOKENS.mallory, 'POST', '/api/v1/namespaces/kube-system/pods', privilegedPod('evil-kube-system', 'kube-system'))
      const created = await must(TOKENS.mallory, 'POST', `/api/v1/namespaces/${NS}/pods`, privilegedPod('evil', NS))
      const createdId = String(created.headers['audit-id'])
      await until('the responder to delete the pod', async () => (await podStatus(NS, 'evil')) === 404)
      t.pass('the pod is gone')
      await until('the kube-system pod\'s finding to be passed over', async () => (await count(agent, 'responsesSkipped', { reason: 'excluded_namespace' })) >= 1)
      t.equal(await podStatus('kube-system', 'evil-kube-system'), 200, 'the same pod in kube-system (respond.excludeNamespaces) is still there')
      t.equal(await count(agent, 'responses', { action: 'delete-pod', outcome: 'done' }), 1, 'auditrail_responses_total{action="delete-pod",outcome="done"}')

      let response: Finding | undefined
      await until('the response finding at the collector', async () => {
        response = (await findings(rig.store)).find((f) => f.id === 'responder.pod-deleted')
        return response !== undefined
      })
      const d = response!.details
      t.match(d, { outcome: 'done', dryRun: 'false', causeRule: 'privileged-container', causeAuditId: createdId, user: 'mallory', target: `pods ${NS}/evil` }, 'linked to the finding that caused it')
      t.equal(response!.auditId, createdId)
      t.match(response!.message, /^deleted pods apps\/evil, answering privileged-container/)
      t.ok((await findings(rig.store)).some((f) => f.id === 'privileged-container' && f.auditId === createdId), 'the cause is at the collector too')
      t.notOk((await findings(rig.store)).some((f) => f.id.startsWith('responder.') && f.details.target?.includes('kube-system')), 'no response to the excluded pod')

      const events = auditEvents(api)
      const deletion = events.find((e) => e.auditID === d.requestAuditId)
      t.ok(deletion, 'the finding names the audit ID of its own request')
      t.match(deletion, { verb: 'delete', user: { username: RESPONDER }, objectRef: { resource: 'pods', namespace: NS, name: 'evil' }, responseStatus: { code: 200 } }, 'the audit log shows the delete as the responder\'s')
      t.match(deletion!.userAgent, /^auditrail-responder \(node node-a; answering privileged-container, audit ID /, 'its User-Agent names the cause')
      t.same(events.filter((e) => e.verb === 'delete' && e.objectRef?.resource === 'pods').map((e) => `${e.user.username} ${e.objectRef?.namespace}/${e.objectRef?.name}`), [`${RESPONDER} ${NS}/evil`], 'the only pod deleted, by the responder only')
      t.equal(excluded.status, 201)
      await agent.stop()
    })

    await t.test('dry run: the pod stays, and a "would delete" finding says what would have been done', async (t) => {
      const { rig, agent } = await startAgent(true)
      const created = await must(TOKENS.mallory, 'POST', `/api/v1/namespaces/${NS}/pods`, privilegedPod('evil-dry', NS))
      const createdId = String(created.headers['audit-id'])
      let response: Finding | undefined
      await until('the dry-run finding at the collector', async () => {
        response = (await findings(rig.store)).find((f) => f.id === 'responder.pod-deleted' && f.details.causeAuditId === createdId)
        return response !== undefined
      })
      t.match(response!.details, { outcome: 'dry_run', dryRun: 'true', causeRule: 'privileged-container', target: `pods ${NS}/evil-dry` })
      t.match(response!.message, /^would delete pods apps\/evil-dry \(dry run: nothing changed\)/)
      t.equal(await podStatus(NS, 'evil-dry'), 200, 'the pod is still there')
      t.notOk(auditEvents(api).some((e) => e.verb === 'delete' && e.objectRef?.name === 'evil-dry'), 'nothing asked the API server to delete it')
      t.same([await count(agent, 'responses', { outcome: 'dry_run' }), await count(agent, 'responses', { outcome: 'done' })], [1, 0])
      await agent.stop()
    })

    await t.test('each other action, with only its shipped role: the binding removed, the workload scaled to zero, the pod labelled', async (t) => {
      for (const action of ['delete-binding', 'scale-to-zero', 'quarantine']) await grant(action)
      const { rig, agent } = await startAgent(false, [
        { rules: ['binding-to-cluster-admin'], action: 'delete-binding' },
        { rules: ['privileged-container'], action: 'scale-to-zero' },
        { rules: ['host-pid'], action: 'quarantine' },
      ])
      const subjects = [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'mallory-friend' }]
      await must(TOKENS.mallory, 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'backdoor' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' }, subjects })
      const template = { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'busybox:1.36', securityContext: { privileged: true } }] } }
      await must(TOKENS.mallory, 'POST', `/apis/apps/v1/namespaces/${NS}/deployments`, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'miner' }, spec: { replicas: 5, selector: { matchLabels: { app: 'x' } }, template } })
      await must(TOKENS.mallory, 'POST', `/api/v1/namespaces/${NS}/pods`, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'spy' }, spec: { hostPID: true, containers: [{ name: 'c', image: 'busybox:1.36' }] } })
      await until('the binding to be removed', async () => (await api.send(TOKENS.admin, 'GET', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/backdoor')).status === 404)
      t.pass('the ClusterRoleBinding to cluster-admin is gone')
      const deployment = async () => JSON.parse((await must(TOKENS.admin, 'GET', `/apis/apps/v1/namespaces/${NS}/deployments/miner`)).text)
      await until('the deployment to be scaled to zero', async () => (await deployment()).spec.replicas === 0)
      t.equal((await deployment()).spec.template.spec.containers[0].securityContext.privileged, true, 'scaled, not changed otherwise: kept for inspection')
      const pod = async () => JSON.parse((await must(TOKENS.admin, 'GET', `/api/v1/namespaces/${NS}/pods/spy`)).text)
      await until('the pod to be labelled', async () => (await pod()).metadata.labels?.['auditrail.io/quarantine'] === 'true')
      const labelled = await pod()
      t.match(labelled.metadata.annotations['auditrail.io/quarantined-for'], /^rule host-pid, audit ID [0-9a-f-]+$/, 'the annotation names the finding')
      t.ok(labelled.metadata.managedFields.some((m: { manager: string }) => m.manager === 'auditrail-responder'), 'the field manager names the responder')
      // The responder's own patch is a host-pid event too (the pod still shares the host's PIDs): never answered again.
      await until('its own patch to be passed over', async () => (await count(agent, 'responsesSkipped', { reason: 'own_identity' })) >= 1)
      t.same(await Promise.all(['delete-binding', 'scale-to-zero', 'quarantine'].map((action) => count(agent, 'responses', { action, outcome: 'done' }))), [1, 1, 1], 'each action once')
      let ids: string[] = []
      await until('the three response findings at the collector', async () => {
        ids = (await findings(rig.store)).filter((f) => f.id.startsWith('responder.') && f.details.outcome === 'done').map((f) => f.id).sort()
        return ids.length >= 3
      })
      t.same(ids, ['responder.binding-removed', 'responder.object-quarantined', 'responder.workload-scaled-to-zero'])
      await agent.stop()
    })

    await t.test('a request refused at admission is a finding marked so, and gets no response', async (t) => {
      const { policies } = admissionPolicies(loadRuleSet([BUILTIN_RULES_DIR]).rules.filter((r) => r.id === 'privileged-container'), 'deny')
      await must(TOKENS.admin, 'POST', '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies', policies[0]!.policy)
      await must(TOKENS.admin, 'POST', '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings', policies[0]!.binding)
      // A policy takes effect a moment after it is created: probe with a dry run until it refuses.
      await until('the policy to take effect', async () => (await api.send(TOKENS.admin, 'POST', `/api/v1/namespaces/${NS}/pods?dryRun=All`, privilegedPod('probe', NS))).status === 422)
      const { rig, agent } = await startAgent(false)
      const refused = await api.send(TOKENS.mallory, 'POST', `/api/v1/namespaces/${NS}/pods`, privilegedPod('evil-blocked', NS))
      t.equal(refused.status, 422, 'refused by the rule\'s policy')
      const refusedId = String(refused.headers['audit-id'])
      let cause: Finding | undefined
      await until('the blocked finding at the collector', async () => {
        cause = (await findings(rig.store)).find((f) => f.id === 'privileged-container' && f.auditId === refusedId)
        return cause !== undefined
      })
      t.equal(cause!.details.blockedAtAdmission, 'true')
      t.match(cause!.message, /\(also blocked at admission\)$/)
      t.equal(await count(agent, 'responsesSkipped', { reason: 'blocked_at_admission' }), 1, 'selected, and passed over: nothing was created')
      t.equal(await count(agent, 'responses', {}), 0, 'no response, not even a failed one')
      await agent.stop()
    })
  })
}
