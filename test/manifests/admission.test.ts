// manifests/admission/ (Warn + Audit) and manifests/admission-deny/ render with
// `kubectl kustomize`, hold one policy and one binding per exported rule, and
// policies.yaml is exactly what `auditrail rules admission` prints today.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { rulesCommand } from '../../agent/guard/cli.ts'

const MANIFESTS = fileURLToPath(new URL('../../manifests', import.meta.url))
type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec: Record<string, any> }

function render(dir: string): Obj[] {
  let out: string
  try {
    out = execFileSync('kubectl', ['kustomize', join(MANIFESTS, dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    throw new Error(`'kubectl kustomize manifests/${dir}' failed (kubectl comes with Debian's kubernetes-client package): ${(err as Error).message}`)
  }
  return parseAllDocuments(out).map((d) => d.toJS() as Obj)
}

t.test('policies.yaml is the current output of `auditrail rules admission`', async (t) => {
  let out = ''
  t.equal(await rulesCommand(['admission'], { out: (s) => void (out += s), err: () => {} }), 0)
  t.equal(readFileSync(join(MANIFESTS, 'admission/policies.yaml'), 'utf8'), out, 'regenerate: node programs/main.ts rules admission > manifests/admission/policies.yaml')
})

t.test('manifests/admission: a policy and a binding per rule, Warn + Audit, labelled with the rule', async (t) => {
  const objects = render('admission')
  const policies = objects.filter((o) => o.kind === 'ValidatingAdmissionPolicy')
  const bindings = objects.filter((o) => o.kind === 'ValidatingAdmissionPolicyBinding')
  t.ok(policies.length >= 10, `${policies.length} policies`)
  t.same(bindings.map((b) => b.spec.policyName).sort(), policies.map((p) => p.metadata.name).sort(), 'each policy bound once, by its own name')
  for (const o of objects) {
    t.equal(o.apiVersion, 'admissionregistration.k8s.io/v1')
    t.equal(o.metadata.name, `auditrail-${o.metadata.labels?.['auditrail.io/rule']}`, `${o.metadata.name}: named and labelled after its rule`)
    if (o.kind === 'ValidatingAdmissionPolicyBinding') t.same(o.spec.validationActions, ['Warn', 'Audit'])
    else t.match(o.spec.validations[0].message, `auditrail rule ${o.metadata.labels?.['auditrail.io/rule']} (`, `${o.metadata.name}: the message names the rule`)
  }
})

t.test('manifests/admission-deny: the same policies, every binding Deny + Audit', async (t) => {
  const warn = render('admission')
  const deny = render('admission-deny')
  t.same(deny.map((o) => o.metadata.name), warn.map((o) => o.metadata.name))
  for (const b of deny.filter((o) => o.kind === 'ValidatingAdmissionPolicyBinding')) t.same(b.spec.validationActions, ['Deny', 'Audit'], b.metadata.name)
})
