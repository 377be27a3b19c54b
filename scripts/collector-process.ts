// A collector for the benchmarks, in a process of its own (forked by scripts/bench.ts
// and scripts/bench-collector.ts), so that its CPU is its own: signature and chain
// checks, storage and the query index, nothing of the bench or the agent. It tells
// its parent over IPC where it listens, and on request how much CPU it has used
// once the index has caught up with every acknowledged batch (a PostgreSQL store
// indexes in each append's transaction: nothing to wait for).
//   (forked) node scripts/collector-process.ts STORE_DIR|URL PUBKEY_FILE
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
}
export type FromCollector = { ready: number; usage: CollectorUsage } | { idle: CollectorUsage }

const [storeDir, publicKeyFile] = process.argv.slice(2)
if (!storeDir || !publicKeyFile || !process.send) throw new Error('usage: forked by scripts/bench.ts or scripts/bench-collector.ts with STORE_DIR|URL PUBKEY_FILE')
const send = (m: FromCollector) => process.send!(m)
const collector = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir, trustedKeys: loadTrustedKeys([publicKeyFile]), logger: pino({ level: 'silent' }), index: true })

function usage(): CollectorUsage {
  const r = process.resourceUsage()
  return { cpuSeconds: (r.userCPUTime + r.systemCPUTime) / 1e6, peakRssMiB: r.maxRSS / 1024, acceptedBatches: collector.stats().acceptedBatches, indexedBatches: collector.indexer?.stats.indexedBatches ?? collector.stats().acceptedBatches }
}

process.on('message', async (m: ToCollector) => {
  if (m === 'idle') {
    await collector.indexer?.idle()
    send({ idle: usage() })
  } else {
    await collector.close()
    process.disconnect()
  }
})
send({ ready: collector.port, usage: usage() })
