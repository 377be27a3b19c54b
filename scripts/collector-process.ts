// A collector for the benchmarks, in a process of its own (forked by scripts/bench.ts
// and scripts/bench-collector.ts), so that its CPU is its own: signature and chain
// checks, storage and the query index, nothing of the bench or the agent. It tells
// its parent over IPC where it listens, and on request how much CPU it has used
// once the index has caught up with every acknowledged batch (a PostgreSQL store
// indexes in each append's transaction: nothing to wait for), and over which HTTP
// version the agent's requests came. With a certificate and key, TLS (ALPN offers
// h2 and http/1.1).
//   (forked) node scripts/collector-process.ts STORE_DIR|URL PUBKEY_FILE [CERT_FILE KEY_FILE]
import { readFileSync } from 'node:fs'
import { pino } from 'pino'
import { startCollector } from '../collector/server.ts'
import { loadTrustedKeys } from '../proto/keys.ts'

export type ToCollector = 'idle' | 'close'
export interface CollectorUsage {
  /** User + system CPU of the whole process (every thread), seconds. */
  cpuSeconds: number
  peakRssMiB: number
  acceptedBatches: number
  indexedBatches: number
  /** Acknowledged PushBatch requests by HTTP version (from the collector's /metrics). */
  pushes: { '1.1': number; '2': number }
}
export type FromCollector = { ready: number; usage: CollectorUsage } | { idle: CollectorUsage }

const [storeDir, publicKeyFile, certFile, keyFile] = process.argv.slice(2)
if (!storeDir || !publicKeyFile || !process.send) throw new Error('usage: forked by scripts/bench.ts or scripts/bench-collector.ts with STORE_DIR|URL PUBKEY_FILE [CERT_FILE KEY_FILE]')
const send = (m: FromCollector) => process.send!(m)
const collector = await startCollector({
  listen: { host: '127.0.0.1', port: 0 }, storeDir, trustedKeys: loadTrustedKeys([publicKeyFile]), logger: pino({ level: 'silent' }), index: true, metricsListen: '127.0.0.1:0',
  ...(certFile && keyFile ? { tls: { cert: readFileSync(certFile), key: readFileSync(keyFile) } } : {}),
})

async function pushes(): Promise<CollectorUsage['pushes']> {
  const text = await (await fetch(`${collector.metricsUrl}/metrics`)).text()
  const count = (http: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`auditrail_collector_requests_total{procedure="PushBatch",protocol="connect",codec="proto",code="ok",http="${http}"} `))
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0
  }
  return { '1.1': count('1.1'), '2': count('2') }
}

async function usage(): Promise<CollectorUsage> {
  const r = process.resourceUsage()
  return { cpuSeconds: (r.userCPUTime + r.systemCPUTime) / 1e6, peakRssMiB: r.maxRSS / 1024, acceptedBatches: collector.stats().acceptedBatches, indexedBatches: collector.indexer?.stats.indexedBatches ?? collector.stats().acceptedBatches, pushes: await pushes() }
}

process.on('message', async (m: ToCollector) => {
  if (m === 'idle') {
    await collector.indexer?.idle()
    send({ idle: await usage() })
  } else {
    await collector.close()
    process.disconnect()
  }
})
send({ ready: collector.port, usage: await usage() })
