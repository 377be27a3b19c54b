// The CLI as a user meets it: a child process with flags, exit codes and messages.
import { execFile, spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const MAIN = fileURLToPath(new URL('../../programs/main.ts', import.meta.url))

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH, ...env }, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
}

/** Starts the agent and resolves with its stderr once `pattern` shows up in it, then kills it. */
function agentUntil(args: string[], pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, 'agent', ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`no ${pattern} in: ${stderr}`))
    }, 20_000)
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
      if (pattern.test(stderr)) {
        clearTimeout(timer)
        child.kill('SIGKILL')
        resolve(stderr)
      }
    })
  })
}

t.test('keygen writes a private key only its owner can read, and never overwrites it', async (t) => {
  const dir = t.testdir()
  const first = await run(['keygen', '--out', join(dir, 'node')])
  t.equal(first.code, 0)
  t.match(first.stdout, /key id:\s+[0-9a-f]{32}/)
  const again = await run(['keygen', '--out', join(dir, 'node')])
  t.equal(again.code, 1)
  t.match(again.stderr, /exists; refusing to overwrite/)
})

t.test('unknown commands and flags are usage errors that name them', async (t) => {
  const cmd = await run(['agnet'])
  t.equal(cmd.code, 2)
  t.match(cmd.stderr, /unknown command "agnet"/)
  const flag = await run(['agent', '--colector', 'x'])
  t.equal(flag.code, 2)
  t.match(flag.stderr, /--colector/)
})

t.test('a broken config names the key and the fix', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'agent.yaml')
  writeFileSync(file, 'node: n\ncollector:\n  url: https://c:1\n  timeout: soon\n')
  const r = await run(['config', 'check', file])
  t.equal(r.code, 2)
  t.match(r.stderr, /collector\.timeout: expected a duration like "250ms"/)
  writeFileSync(file, 'node: n\ncollector:\n  url: https://c:1\n')
  const ok = await run(['config', 'check', file])
  t.equal(ok.code, 0)
  t.match(JSON.parse(ok.stdout), { node: 'n', streamId: 'n', collector: { urls: ['https://c:1'], timeoutMs: 10000 }, alert: { enabled: false, minSeverity: 'high', coolDownMs: 300000 } })
})

t.test('a missing key file, a loose key file and a key of the wrong type say what to do', async (t) => {
  const dir = t.testdir()
  const common = ['--node', 'n', '--collector', 'http://127.0.0.1:9', '--state-dir', join(dir, 'state'), '--log', join(dir, 'audit.log'), '--metrics-listen', '127.0.0.1:0']
  const missing = await run(['agent', ...common, '--key', join(dir, 'nope.pem')])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /cannot read signing key .*nope\.pem: ENOENT; create one with 'auditrail keygen/)
  const loose = join(dir, 'loose.pem')
  writeFileSync(loose, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o644 })
  const looseRun = await run(['agent', ...common, '--key', loose])
  t.equal(looseRun.code, 1)
  t.match(looseRun.stderr, /readable by group or others \(mode 644\); run 'chmod 600/)
  const rsa = join(dir, 'rsa.pem')
  writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 })
  const rsaRun = await run(['agent', ...common, '--key', rsa])
  t.equal(rsaRun.code, 1)
  t.match(rsaRun.stderr, /holds a rsa key; Auditrail signs with Ed25519/)
  t.notMatch(rsaRun.stderr, /BEGIN/, 'the key is never printed')
})

t.test('an unreachable collector is retried and named', async (t) => {
  const dir = t.testdir()
  await run(['keygen', '--out', join(dir, 'node')])
  const stderr = await agentUntil(
    ['--node', 'n', '--collector', 'http://127.0.0.1:9', '--state-dir', join(dir, 'state'), '--log', join(dir, 'audit.log'), '--key', join(dir, 'node.key.pem'), '--metrics-listen', '127.0.0.1:0'],
    /cannot reach collector/,
  )
  t.match(stderr, /cannot get the stream head yet: cannot reach collector http:\/\/127\.0\.0\.1:9: ECONNREFUSED/)
})

t.test('policy check exits 1 and names each blind spot, 0 on the shipped policy', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'policy.yaml')
  writeFileSync(file, 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: None\n    resources:\n      - group: ""\n        resources: ["secrets"]\n  - level: RequestResponse\n')
  const gaps = await run(['policy', 'check', file])
  t.equal(gaps.code, 1)
  t.match(gaps.stdout, /blind spot: rule secret-read: get,list,watch secrets needs Metadata at ResponseComplete; the policy gives level None \(rules\[0\]\)/)
  const ok = await run(['policy', 'check', fileURLToPath(new URL('../../manifests/apiserver/audit-policy.yaml', import.meta.url))])
  t.equal(ok.code, 0, ok.stdout + ok.stderr)
  const missing = await run(['policy', 'check', join(dir, 'nope.yaml')])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /cannot read .*nope\.yaml: ENOENT/)
})
