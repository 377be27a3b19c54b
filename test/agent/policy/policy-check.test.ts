import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { checkPolicy, parseAuditPolicy } from '../../../agent/policy/policy-check.ts'

const policy = (rules: string, top = '') => parseAuditPolicy(`apiVersion: audit.k8s.io/v1\nkind: Policy\n${top}rules:\n${rules}`, 'test.yaml')
const spots = (p: ReturnType<typeof policy>) => checkPolicy(p).map((s) => `${s.requirement} ${s.verb} ${s.resource}`)

t.test('the shipped apiserver policy has no blind spot', async (t) => {
  const file = fileURLToPath(new URL('../../../manifests/apiserver/audit-policy.yaml', import.meta.url))
  t.same(checkPolicy(parseAuditPolicy(readFileSync(file, 'utf8'), file)), [])
})

t.test('planted gap 1: secrets at None hides secret reads', async (t) => {
  const found = spots(policy('  - level: None\n    resources:\n      - group: ""\n        resources: ["secrets"]\n  - level: RequestResponse\n'))
  t.ok(found.includes('secret-access get secrets'))
  t.ok(found.includes('forbidden-burst list secrets'))
  t.notOk(found.some((s) => s.startsWith('rbac-change')), 'nothing else is reported')
})

t.test('planted gap 2: RBAC at Metadata while the rules read the request', async (t) => {
  const found = checkPolicy(policy('  - level: Metadata\n    resources:\n      - group: rbac.authorization.k8s.io\n  - level: RequestResponse\n'))
  const rbac = found.filter((s) => s.requirement === 'rbac-change')
  t.equal(rbac.length, 16, '4 verbs x 4 RBAC resources')
  t.match(rbac[0]!.gets, /level Metadata \(rules\[0\]\)/)
  t.match(rbac[0]!.needs, /RequestResponse/)
})

t.test('planted gap 3: RequestReceived omitted for everything blinds the dropped-event detector', async (t) => {
  const found = checkPolicy(policy('  - level: RequestResponse\n', 'omitStages: ["RequestReceived"]\n'))
  t.ok(found.length > 0 && found.every((s) => s.requirement === 'dropped-event'))
  t.match(found[0]!.gets, /stage RequestReceived omitted/)
})

t.test('a rule for some users only is a blind spot for them, not a full cover', async (t) => {
  const found = checkPolicy(policy('  - level: None\n    users: ["system:serviceaccount:ci:deployer"]\n  - level: RequestResponse\n'))
  t.ok(found.length > 0)
  t.match(found[0]!.gets, /for the users, namespaces or names it names/)
})

t.test('a broken policy is an error that says what is wrong', async (t) => {
  t.throws(() => parseAuditPolicy('kind: ConfigMap\n', 'x.yaml'), /x\.yaml: not an audit policy/)
  t.throws(() => policy('  - level: Loud\n'), /rules\[0\]\.level: expected one of None, Metadata, Request, RequestResponse/)
  t.throws(() => policy('  - level: None\n    omitStages: ["Later"]\n'), /unknown stage "Later"/)
})
