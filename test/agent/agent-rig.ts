// An agent and a real collector on 127.0.0.1 in a fresh directory, for tests
// that drive the whole pipeline in one process. One teardown stops agents and
// collectors before the directory goes (tap would remove a testdir first).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import type { Test } from 'tap'
import { AuditAgent } from '../../agent/agent.ts'
import { loadAgentConfig, type AgentConfig } from '../../agent/config.ts'
import { generateKeyPair } from '../../agent/keygen.ts'
import { exportStream } from '../../collector/export.ts'
import { startCollector, type CollectorOptions } from '../../collector/server.ts'
import { loadTrustedKeys } from '../../proto/keys.ts'

export async function agentRig(t: Test, overrides: (c: AgentConfig) => void = () => {}, collectorOptions: Partial<CollectorOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'auditrail-agent-test-'))
  const closers: Array<() => Promise<void>> = []
  t.teardown(async () => {
    for (const close of closers.reverse()) await close()
    rmSync(dir, { recursive: true, force: true })
  })
  mkdirSync(join(dir, 'log'))
  const keys = generateKeyPair(join(dir, 'node'))
  const store = join(dir, 'store')
  const collector = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: store, trustedKeys: loadTrustedKeys([keys.publicKeyFile]), ...collectorOptions })
  closers.push(() => collector.close())
  const config = loadAgentConfig({
    overrides: { node: 'node-a', 'collector.url': collector.url, 'tail.path': join(dir, 'log', 'audit.log'), stateDir: join(dir, 'state'), 'signing.keyFile': keys.keyFile },
    env: {},
  })
  config.tail.pollIntervalMs = 50
  overrides(config)
  /** The agent's log lines at warn and above. */
  const logs: string[] = []
  const logger = pino({ level: 'warn' }, new Writable({ write(c: Buffer, _e, cb) { logs.push(c.toString()); cb() } }))
  const start = async () => {
    const agent = new AuditAgent(config, { logger })
    closers.push(() => agent.stop())
    await agent.start()
    return agent
  }
  return { dir, keys, store, collector, config, start, logs, logPath: config.tail.path, closeLater: (close: () => Promise<void>) => closers.push(close) }
}

/** `auditrail export --records` of the store, as lines (none while the store holds no stream yet). */
export async function exportRecords(store: string): Promise<string[]> {
  const chunks: Buffer[] = []
  const out = new Writable({ write(c, _e, cb) { chunks.push(c as Buffer); cb() } })
  try {
    await exportStream(store, { records: true, out })
  } catch (err) {
    if (/holds no streams/.test((err as Error).message)) return []
    throw err
  }
  return Buffer.concat(chunks).toString('latin1').split('\n').slice(0, -1)
}

export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
