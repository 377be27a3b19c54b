// `auditrail policy check`: the shipped apiserver policy passes with no blind
// spot; three sample policies with planted gaps are caught, each gap named with
// its rule or detector, verbs, resource, the level needed and what the policy gives.
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { PolicyError } from '../../../agent/policy/audit-policy.ts'
import { policyCommand } from '../../../agent/policy/cli.ts'

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const SHIPPED = here('../../../manifests/apiserver/audit-policy.yaml')
const RULES = here('rules')

async function run(...argv: string[]): Promise<{ code: number; lines: string[] }> {
  let text = ''
  const code = await policyCommand(argv, { stdout: (s) => { text += s } })
  return { code, lines: text.trimEnd().split('\n') }
}
const spots = (lines: string[]) => lines.filter((l) => l.startsWith('blind spot: '))

t.test('the shipped apiserver policy has no blind spot, also for user rules: exit 0', async (t) => {
  const { code, lines } = await run('check', SHIPPED, '--rules', RULES)
  t.equal(code, 0, lines.join('\n'))
  t.same(spots(lines), [])
  t.notOk(lines.some((l) => l.startsWith('warning:')), 'no credential-bearing body is logged')
  t.match(lines.at(-1), /^ok: .*audit-policy\.yaml lets through every event that 27 rules and detectors need$/)
})

t.test('planted gap: secrets at None hides every secret request, and only those', async (t) => {
  const { code, lines } = await run('check', here('policies/secrets-at-none.yaml'))
  t.equal(code, 1)
  const found = spots(lines)
  t.ok(found.length > 0)
  for (const line of found) t.match(line, / secrets needs .*; the policy gives level None \(rules\[1\]\) — /, line)
  for (const id of ['rule secret-read: get,list,watch secrets needs Metadata at ResponseComplete', 'detector secret-read-burst:', 'rule trail-tampering: create,update,patch,delete secrets', 'detector dropped-event: create,update,patch,delete,deletecollection secrets needs Metadata at RequestReceived']) {
    t.ok(found.some((l) => l.includes(id)), id)
  }
  t.match(lines.at(-1), new RegExp(`^${found.length} blind spot\\(s\\) in .*secrets-at-none\\.yaml`))
})

t.test('planted gap: RBAC at Metadata while built-in and user rules read the request', async (t) => {
  const { code, lines } = await run('check', here('policies/rbac-at-metadata.yaml'), '--rules', RULES)
  t.equal(code, 1)
  const found = spots(lines)
  t.same(found.filter((l) => l.includes('rule rbac-change:')).length, 4, 'one line per RBAC resource, the four verbs on it')
  t.ok(found.includes('blind spot: rule rbac-change: create,update,patch,delete rbac.authorization.k8s.io/clusterrolebindings needs RequestResponse at ResponseComplete; the policy gives level Metadata (rules[1]) — RBAC rules read the role or binding (wildcards, cluster-admin, escalate/bind/impersonate grants) and the object that results'))
  t.ok(found.includes('blind spot: rule rolebinding-to-cluster-admin: create,update rbac.authorization.k8s.io/rolebindings needs Request at ResponseComplete; the policy gives level Metadata (rules[1]) — its expressions read requestObject'), 'the user rule from --rules is checked too')
  t.ok(found.every((l) => l.includes('rbac.authorization.k8s.io/') && l.includes('(rules[1])')), 'nothing outside RBAC is reported')
})

t.test('planted gap: RequestReceived omitted for the whole policy blinds the dropped-event detector only', async (t) => {
  const { code, lines } = await run('check', here('policies/requestreceived-omitted.yaml'))
  t.equal(code, 1)
  const found = spots(lines)
  t.ok(found.length >= 10, 'every probed resource')
  for (const line of found) t.match(line, /^blind spot: detector dropped-event: create,update,patch,delete,deletecollection \S+ needs Metadata at RequestReceived; the policy gives (Metadata|RequestResponse) without RequestReceived \(the policy's omitStages\) \(rules\[\d\]\)/)
  t.ok(found.some((l) => l.includes(' example.auditrail.dev/widgets ')), 'custom resources stand for everything else')
})

t.test('a credential-bearing body in the log is a warning, not a blind spot', async (t) => {
  const { lines } = await run('check', here('../../fixtures/apiserver-v1.26/audit-policy.yaml'))
  t.ok(lines.includes('warning: get,list,watch,create,update,patch secrets is logged at RequestResponse (rules[0]): secret values would be written to the audit log on disk; use Metadata'))
})

t.test('usage and unreadable input are errors that say what to do', async (t) => {
  await t.rejects(run('lint', SHIPPED), PolicyError)
  await t.rejects(run('check'), /usage: auditrail policy check POLICY\.yaml/)
  await t.rejects(run('check', here('policies/missing.yaml')), /cannot read .*missing\.yaml: ENOENT/)
  await t.rejects(run('check', SHIPPED, '--rules', here('policies/missing')), /--rules .*missing: the rules do not load .*missing: cannot read the rules directory \(ENOENT\)/)
  await t.rejects(run('check', SHIPPED, '--no-builtin'), /nothing to check/)
  await t.rejects(run('check', SHIPPED, '--level', 'x'), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' })
  t.equal((await run('--help')).code, 0)
})

t.test('the shipped policy lets through everything the built-in guardrail pack reads', async (t) => {
  const { code, lines } = await run('check', SHIPPED, '--rules', here('../../../agent/guard/builtin-rules'))
  t.same(spots(lines), [])
  t.equal(code, 0)
})
