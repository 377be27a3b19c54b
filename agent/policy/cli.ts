// `auditrail policy check POLICY.yaml [--rules DIR]...`: names every event the
// apiserver's audit policy hides from Auditrail's rules and detectors. Exit 1
// when there is a blind spot (so it can gate a CI pipeline), 0 when there is none.
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { parseAuditPolicy, PolicyError } from './audit-policy.ts'
import { findBlindSpots, findExposures, formatBlindSpot } from './blind-spots.ts'
import { BUILTIN_REQUIREMENTS } from './requirements.ts'
import { loadRuleRequirements } from './rule-requirements.ts'

const USAGE = 'usage: auditrail policy check POLICY.yaml [--rules DIR]... [--no-builtin]'

export interface PolicyOutput {
  stdout: (text: string) => void
}

export async function policyCommand(argv: string[], out: PolicyOutput = { stdout: (text) => process.stdout.write(text) }): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === '--help' || sub === '-h') {
    out.stdout(`${USAGE}
  checks the policy against the built-in rules and detectors, plus the rules in each --rules DIR
  --no-builtin  check only the rules of --rules (for a cluster that disables the built-in pack)
exit code: 0 no blind spot, 1 blind spots (each named on its own line), 2 usage or unreadable input
`)
    return 0
  }
  if (sub !== 'check') throw new PolicyError(USAGE)
  const { values, positionals } = parseArgs({ args: rest, options: { rules: { type: 'string', multiple: true }, 'no-builtin': { type: 'boolean' } }, strict: true, allowPositionals: true })
  const [file, ...extra] = positionals
  if (!file || extra.length > 0) throw new PolicyError(USAGE)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new PolicyError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const policy = parseAuditPolicy(text, file)
  const requirements = [...(values['no-builtin'] ? [] : BUILTIN_REQUIREMENTS), ...(values.rules ?? []).flatMap((dir) => loadRuleRequirements(dir))]
  if (requirements.length === 0) throw new PolicyError('nothing to check: --no-builtin without --rules DIR')
  const spots = findBlindSpots(policy, requirements)
  for (const spot of spots) out.stdout(`${formatBlindSpot(spot)}\n`)
  for (const warning of findExposures(policy)) out.stdout(`${warning}\n`)
  const checked = `${requirements.length} rules and detectors`
  out.stdout(spots.length === 0 ? `ok: ${file} lets through every event that ${checked} need\n` : `${spots.length} blind spot(s) in ${file} for ${checked}\n`)
  return spots.length === 0 ? 0 : 1
}
