// A peer's test suite: Falco's Kubernetes-audit regression events, with the
// rule Falco's default rules fire on each (test/fixtures/falco-k8s-audit,
// README.md there for the source and the licence). The conformance check is
// the README's: where Falco fires a security rule, the built-in pack reports
// at least one finding of medium severity or higher; where Falco fires one of
// its "K8s ... Created/Deleted" activity rules, the pack reports the change
// (any severity); where no Falco rule fires, the pack reports nothing of
// medium or higher; the malformed event stops nothing.
import { readdirSync, readFileSync } from 'node:fs'
import t from 'tap'
import { decodeAuditLine, type DecodeResult } from '../../../agent/audit/event.ts'
import { BUILTIN_RULES_DIR, loadRuleSet, type RuleFinding, type RuleSet } from '../../../agent/guard/rule-set.ts'
import { Detectors } from '../../../agent/anomaly/detectors.ts'
import { severityRank } from '../../../proto/wire.ts'

const FIXTURE = new URL('../../fixtures/falco-k8s-audit/', import.meta.url)
const MEDIUM = severityRank('medium')
const MALFORMED = 'fal_01_003.json'

interface Expectation {
  file: string
  falcoRule: string | undefined
  outcome: 'security' | 'activity' | 'none'
}

function readExpectations(): Expectation[] {
  const [header, ...rows] = readFileSync(new URL('expected.tsv', FIXTURE), 'utf8').split('\n').filter((l) => l.trim() !== '')
  if (header !== 'trace_file\tfalco_rule\tfalco_outcome') throw new Error(`expected.tsv: unexpected header ${header}`)
  return rows.map((row) => {
    const [file, falcoRule, falcoOutcome] = row.split('\t') as [string, string, string]
    if (falcoOutcome === 'no rule fires') return { file, falcoRule: undefined, outcome: 'none' }
    if (falcoOutcome !== 'fires') throw new Error(`expected.tsv: unknown outcome ${falcoOutcome} for ${file}`)
    return { file, falcoRule, outcome: /^K8s .+ (Created|Deleted)$/.test(falcoRule) ? 'activity' : 'security' }
  })
}

/** Falco ships one event per file, some pretty-printed: the agent reads one event per line. */
function decodeFile(file: string): DecodeResult {
  const text = readFileSync(new URL(`events/${file}`, FIXTURE), 'utf8')
  // A JSON string cannot hold a raw newline, so the newlines and the indentation after them are layout.
  const line = text.split(/\r?\n/).map((l) => l.trim()).join('')
  return decodeAuditLine(Buffer.from(line))
}

function inspect(rules: RuleSet, result: DecodeResult): RuleFinding[] {
  const out: RuleFinding[] = []
  if ('event' in result) rules.inspect(result.event, out)
  return out
}

const atLeastMedium = (f: RuleFinding) => severityRank(f.severity) >= MEDIUM
const list = (findings: RuleFinding[]) => findings.map((f) => `${f.id} (${f.severity})`).join(', ') || 'no finding'

/** Which of our rules answer each Falco rule (a stricter check than the README's: the right rule, not just any). */
// Falco's pod events are the replicaset controller creating a Deployment's pods: the pack's high is the
// Deployment's create (not in these one-event traces), the controller's pod is recorded at medium.
const COUNTERPARTS: Record<string, string[]> = {
  'Create Privileged Pod': ['privileged-container', 'controller-made-pod-outside-baseline'],
  'Create Sensitive Mount Pod': ['sensitive-host-path-mount', 'controller-made-pod-outside-baseline'],
  'Create HostNetwork Pod': ['host-network', 'controller-made-pod-outside-baseline'],
  'Anonymous Request Allowed': ['anonymous-request-allowed'],
  'Attach/Exec Pod': ['pod-exec-attach', 'pod-exec-attach-kube-system'],
  'Pod Created in Kube Namespace': ['workload-in-system-namespace', 'pod-in-system-namespace-untrusted-image'],
  'Service Account Created in Kube Namespace': ['serviceaccount-in-system-namespace'],
  'System ClusterRole Modified/Deleted': ['system-role-changed'],
  'Attach to cluster-admin Role': ['binding-to-cluster-admin'],
  'ClusterRole With Wildcard Created': ['role-with-wildcard'],
  'ClusterRole With Write Privileges Created': ['role-with-write-access'],
  'ClusterRole With Pod Exec Created': ['role-with-sensitive-grant'],
  'K8s Deployment Created': ['workload-changed'],
  'K8s Deployment Deleted': ['workload-changed'],
  'K8s Service Created': ['cluster-object-changed'],
  'K8s Service Deleted': ['cluster-object-changed'],
  'K8s ConfigMap Created': ['cluster-object-changed'],
  'K8s ConfigMap Deleted': ['cluster-object-changed'],
  'K8s Namespace Deleted': ['cluster-object-changed'],
  'K8s Serviceaccount Created': ['cluster-object-changed'],
  'K8s Serviceaccount Deleted': ['cluster-object-changed'],
  'K8s Secret Created': ['cluster-object-changed'],
  'K8s Secret Deleted': ['cluster-object-changed'],
  'K8s Role/Clusterrole Created': ['rbac-object-changed'],
  'K8s Role/Clusterrole Deleted': ['rbac-object-changed'],
  'K8s Role/Clusterrolebinding Created': ['rbac-object-changed'],
  'K8s Role/Clusterrolebinding Deleted': ['rbac-object-changed'],
}

const expectations = readExpectations()
const builtin = loadRuleSet([BUILTIN_RULES_DIR])

t.test('the fixture: every event file has exactly one expectation', async (t) => {
  const files = readdirSync(new URL('events/', FIXTURE)).filter((n) => n.endsWith('.json')).sort()
  t.equal(files.length, 41, 'the README counts 41 cases')
  t.same(expectations.map((e) => e.file).sort(), files)
  t.equal(new Set(expectations.map((e) => e.file)).size, expectations.length, 'no file listed twice')
  const count = (o: Expectation['outcome']) => expectations.filter((e) => e.outcome === o).length
  t.same({ security: count('security'), activity: count('activity'), none: count('none') }, { security: 20, activity: 15, none: 6 })
})

for (const e of expectations) {
  const expected = e.outcome === 'security' ? `Falco fires "${e.falcoRule}": a finding of medium or higher` : e.outcome === 'activity' ? `Falco fires "${e.falcoRule}": the change is reported` : 'no Falco rule fires: nothing of medium or higher'
  t.test(`${e.file}: ${expected}`, async (t) => {
    // A set of its own per case: multi-stage rules remember the requests they fired for.
    const rules = loadRuleSet([BUILTIN_RULES_DIR])
    let result: DecodeResult | undefined
    let findings: RuleFinding[] = []
    t.doesNotThrow(() => {
      result = decodeFile(e.file)
      findings = inspect(rules, result)
    }, 'decoding and inspecting do not throw')
    if (!result) return
    if (e.file === MALFORMED) {
      t.ok('unparsed' in result, `the malformed event decodes as unparsed (${'unparsed' in result ? result.unparsed : 'parsed'})`)
      t.same(findings, [], 'and yields no finding')
      return
    }
    if (!('event' in result)) {
      t.fail(`the event did not decode: ${result.unparsed}`)
      return
    }
    for (const f of findings) t.equal(f.auditId, result.event.auditID, `${f.id} names the event's auditID`)
    switch (e.outcome) {
      case 'security': {
        t.ok(findings.some(atLeastMedium), `at least one finding of medium or higher (${list(findings)})`)
        const ours = COUNTERPARTS[e.falcoRule!]
        t.ok(ours, `a counterpart is listed for "${e.falcoRule}"`)
        if (ours) t.ok(findings.some((f) => ours.includes(f.id) && atLeastMedium(f)), `our counterpart of "${e.falcoRule}" (${ours.join(' or ')}) fires at medium or higher (${list(findings)})`)
        break
      }
      case 'activity': {
        t.ok(findings.length > 0, `at least one finding (${list(findings)})`)
        const ours = COUNTERPARTS[e.falcoRule!]
        t.ok(ours, `a counterpart is listed for "${e.falcoRule}"`)
        if (ours) t.ok(findings.some((f) => ours.includes(f.id)), `our counterpart of "${e.falcoRule}" (${ours.join(' or ')}) fires (${list(findings)})`)
        break
      }
      case 'none':
        t.same(findings.filter(atLeastMedium).map((f) => f.id), [], `nothing of medium or higher (${list(findings)})`)
        break
    }
  })
}

t.test('the whole suite through one rule set, as the agent would read it: the malformed line stops nothing', async (t) => {
  const findings: RuleFinding[] = []
  let unparsed = 0
  t.doesNotThrow(() => {
    for (const e of expectations) {
      const result = decodeFile(e.file)
      if ('unparsed' in result) unparsed++
      else builtin.inspect(result.event, findings)
    }
  })
  t.equal(unparsed, 1, `only ${MALFORMED} is unparsed`)
  const medium = new Set(findings.filter(atLeastMedium).map((f) => f.auditId))
  const security = expectations.filter((e) => e.outcome === 'security').length
  t.ok(medium.size >= security, `${medium.size} events with a finding of medium or higher, for ${security} security cases`)
})

/**
 * The detectors on the same events: each one repeated 40 times in 20 s by its
 * own identity (a burst of exactly that request). Only the burst detector of
 * that kind of request may fire: a burst of deletes is one, a burst of pod
 * creations by the replica set controller is nothing, and no detector may
 * read a delete as a secret read.
 */
const burstOf = (ev: { verb: string; user: { username?: string } }): string[] => [
  ...(['delete', 'deletecollection'].includes(ev.verb) ? ['delete-burst'] : []),
  ...(ev.user.username === 'system:anonymous' ? ['anonymous-burst'] : []),
]
for (const e of expectations.filter((x) => x.file !== MALFORMED)) {
  t.test(`${e.file} repeated as a burst: only the detector of its kind fires`, async (t) => {
    const result = decodeFile(e.file)
    if (!('event' in result)) return t.fail(`the event did not decode: ${result.unparsed}`)
    const detectors = new Detectors({ builtin: true, dirs: [] })
    const findings: RuleFinding[] = []
    const t0 = Date.parse(result.event.stageTimestamp!)
    for (let i = 0; i < 40; i++) {
      const time = new Date(t0 + i * 500).toISOString()
      detectors.inspect({ ...result.event, auditID: `${result.event.auditID}-${i}`, stageTimestamp: time, requestReceivedTimestamp: time }, findings)
    }
    const expected = burstOf(result.event)
    t.same([...new Set(findings.map((f) => f.id))], expected, `${result.event.user.username} did ${result.event.verb} ${result.event.objectRef?.resource}: ${expected.join(', ') || 'no detector'} (${list(findings)})`)
  })
}
