// A real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1, for the
// alert tests and scripts/bench-alert.ts: a config with a null receiver, its
// own storage directory, gossip off (--cluster.listen-address=), a free port.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'

export const ALERTMANAGER_BINARY = process.env.AUDITRAIL_ALERTMANAGER ?? '/usr/bin/prometheus-alertmanager'

/** An alert as GET /api/v2/alerts returns it (the fields the tests read). */
export interface GettableAlert {
  labels: Record<string, string>
  annotations: Record<string, string>
  startsAt: string
  endsAt: string
  fingerprint: string
  status: { state: string }
}

export interface RunningAlertmanager {
  url: string
  alerts(): Promise<GettableAlert[]>
  stop(): Promise<void>
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })
}

/** Starts Alertmanager with its state in `dir`; resolves once /-/ready answers 200. */
export async function startAlertmanager(dir: string): Promise<RunningAlertmanager> {
  if (!existsSync(ALERTMANAGER_BINARY)) {
    throw new Error(`${ALERTMANAGER_BINARY} is missing: install Debian's prometheus-alertmanager package (apt-get update && apt-get install -y prometheus-alertmanager), or point AUDITRAIL_ALERTMANAGER at the binary`)
  }
  const config = join(dir, 'alertmanager.yml')
  writeFileSync(config, 'route:\n  receiver: "null"\n  group_wait: 1s\nreceivers:\n  - name: "null"\n')
  // The port is free when asked, but another process may take it before Alertmanager binds: try again then.
  let lastError = ''
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const child = spawn(ALERTMANAGER_BINARY, [
      `--config.file=${config}`,
      `--storage.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--cluster.listen-address=',
      '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000)
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    const ready = await waitReady(url, exited)
    if (ready) return running(url, child, exited)
    child.kill('SIGKILL')
    await exited
    lastError = stderr.trim()
  }
  throw new Error(`Alertmanager did not start: ${lastError}`)
}

async function waitReady(url: string, exited: Promise<number | null>): Promise<boolean> {
  let done = false
  void exited.then(() => {
    done = true
  })
  const deadline = Date.now() + 15_000
  while (!done && Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/-/ready`)).status === 200) return true
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return false
}

function running(url: string, child: ChildProcess, exited: Promise<number | null>): RunningAlertmanager {
  return {
    url,
    async alerts() {
      const res = await fetch(`${url}/api/v2/alerts`)
      if (res.status !== 200) throw new Error(`GET ${url}/api/v2/alerts answered ${res.status}: ${await res.text()}`)
      return (await res.json()) as GettableAlert[]
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
}
