// A real kube-apiserver (v1.36, the runner in ../shared/tools/kube-apiserver) with etcd, for the tests
// that need the API server itself: what is missing to run it (the tests skip, naming it), and one started
// in a fresh directory with the caller's static tokens, stopped and removed at the test's end.
// Needs the runner (AUDITRAIL_KUBE_APISERVER=DIR, else ../shared/tools/kube-apiserver beside the
// repository), etcd (Debian's etcd-server, or ETCD=path), openssl and python3 (run.sh uses them).
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import { Agent, request } from 'undici'
import { freePort } from './processes.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const RUNNER = process.env.AUDITRAIL_KUBE_APISERVER ?? join(ROOT, '../shared/tools/kube-apiserver')
const run = promisify(execFile)
const onPath = (name: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** What this machine lacks to run the API server; empty when it can. */
export const missing = [
  ...(existsSync(join(RUNNER, 'run.sh')) && existsSync(join(RUNNER, 'kube-apiserver')) ? [] : [`the kube-apiserver runner (run.sh and kube-apiserver) in ${RUNNER}: set AUDITRAIL_KUBE_APISERVER to its directory`]),
  ...(process.env.ETCD ? [] : onPath('etcd') ? [] : ['etcd: apt-get install -y etcd-server (Debian), or ETCD=path']),
  ...['openssl', 'python3'].filter((p) => !onPath(p)).map((p) => `${p} (run.sh needs it)`),
]

export interface KubeApiserver {
  dir: string
  url: string
  caFile: string
  /** The audit log (RequestResponse, every stage; rotated at 1 MB, gzipped backups). */
  auditLog: string
  dispatcher: Agent
  /** One request with `token`; JSON in and out. */
  send(token: string, method: string, path: string, body?: unknown, contentType?: string): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }>
}

/**
 * Starts the API server with a static token file of `token,user,uid,"groups"` lines (run.sh keeps an
 * existing file), and stops it at the end of `t`.
 */
export async function startKubeApiserver(t: Test, tokensCsv: string): Promise<KubeApiserver> {
  const dir = mkdtempSync(join(tmpdir(), 'auditrail-kube-apiserver-'))
  writeFileSync(join(dir, 'tokens.csv'), tokensCsv, { mode: 0o600 })
  const port = await freePort()
  t.teardown(async () => {
    await run(join(RUNNER, 'stop.sh'), [dir]).catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  })
  await run(join(RUNNER, 'run.sh'), [dir, String(port)], { timeout: 120_000 })
  const caFile = join(dir, 'pki/ca.crt')
  const dispatcher = new Agent({ connect: { ca: readFileSync(caFile) } })
  t.teardown(() => dispatcher.close())
  const url = `https://127.0.0.1:${port}`
  return {
    dir,
    url,
    caFile,
    auditLog: join(dir, 'audit/audit.log'),
    dispatcher,
    async send(token, method, path, body, contentType = 'application/json') {
      const res = await request(`${url}${path}`, {
        method: method as 'GET',
        dispatcher,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': contentType }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
      return { status: res.statusCode, text: await res.body.text(), headers: res.headers }
    },
  }
}
