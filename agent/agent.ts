// The agent's pipeline, in one direction:
//   tail -> decode -> inspect (rules, detectors) -> redact -> batch -> seal -> send -> (ack) checkpoint
// This module wires the stages together and owns their lifecycle; each stage
// lives in its own folder and knows nothing of the others.
import { performance } from 'node:perf_hooks'
import { watch, type FSWatcher } from 'chokidar'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { verifySeal } from '../proto/signed-messages.ts'
import { batchDigest, decodeBatch, type Batch, type Finding, type WireRecord } from '../proto/wire.ts'
import { decodeAuditLine, type AuditEvent } from './audit/event.ts'
import type { AgentConfig } from './config.ts'
import { Detectors, eventTimeMs } from './anomaly/detectors.ts'
import { FindingGroups, groupFinding, type GroupChange } from './guard/finding-groups.ts'
import { Guard } from './guard/guard.ts'
import { AgentMetrics } from './observe/metrics.ts'
import { BatchRing } from './ship/batch-ring.ts'
import { Batcher, type ProcessedRecord } from './ship/batcher.ts'
import { Sealer, type BatchDraft, type SealedItem } from './ship/sealer.ts'
import { peerDispatcher, Sender, SendError, backoffMs } from './ship/sender.ts'
import { createSigningKeyIfMissing, SigningKeyFile } from './ship/signing-key.ts'
import { CollectorTls } from './ship/collector-tls.ts'
import { CollectorChoice } from './ship/collectors.ts'
import { createRedactor, UnscannableLine } from './redact/redactor.ts'
import { Responder } from './respond/responder.ts'
import { loadOrCreateSalt } from './redact/salt.ts'
import { CheckpointFile, type Checkpoint } from './state/checkpoint.ts'
import { backupNaming } from './tail/backup-names.ts'
import { QuarantineDirectory } from './tail/quarantine.ts'
import { Tailer, type Backlog, type TailChunk, type TailPosition, type TailRecord } from './tail/tailer.ts'

export interface AgentDeps {
  logger: Logger
  metrics?: AgentMetrics
  /**
   * The alert path, called as soon as an event is read that opens, grows or ends
   * a finding group: with the group's finding (its first event's, the group's
   * id, state, count and first and last time in `details`) and its first event.
   */
  onFinding?: (finding: Omit<Finding, 'recordIndex'>, event: AuditEvent) => void
  /** Called after the checkpoint moved past acknowledged batches (the demo and benchmarks measure with it). */
  onAcknowledged?: (items: SealedItem[]) => void
}

/** A chain we cannot continue without an operator's decision. */
export class ChainError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ChainError'
  }
}

const WITHHELD_LINE = Buffer.from('{"auditrail":"withheld: this line concerns a secret and could not be scanned for redaction"}')
const INCOMPLETE_REASON = 'incomplete: the file ended without a newline after this line'
/** The most the ring of sealed batches takes, whatever collector.maxUnackedBytes allows (a batch that does not fit gets a buffer of its own). */
const MAX_BATCH_RING_BYTES = 64 * 1024 * 1024

export class AuditAgent {
  readonly metrics: AgentMetrics
  readonly #config: AgentConfig
  readonly #log: Logger
  readonly #deps: AgentDeps
  readonly #key: SigningKeyFile
  readonly #checkpoints: CheckpointFile
  readonly #sender: Sender
  readonly #batchRing: BatchRing
  #dispatcher: Dispatcher
  readonly #tls: CollectorTls
  #tailer: Tailer | undefined
  #watcher: FSWatcher | undefined
  #batcher: Batcher | undefined
  #sealer: Sealer | undefined
  #loop: Promise<void> | undefined
  #timers: NodeJS.Timeout[] = []
  #wake: (() => void) | undefined
  #stopping = false
  #stopDone: Promise<void> | undefined
  #stopSignal: () => void = () => {}
  readonly #stopped = new Promise<void>((resolve) => {
    this.#stopSignal = resolve
  })
  #synced = false
  #lastSealedAt = 0
  #newestAckedEventMs = 0
  /** The file position in the checkpoint: kept by batches that do not move it. */
  #checkpointPosition: TailPosition | undefined
  /** The checkpoint writer while it runs (see #saveCheckpoint). */
  #checkpointWrites: Promise<void> | undefined
  /** The newest acknowledged checkpoint not yet being written, and the batches it covers. */
  #pendingCheckpoint: { checkpoint: Checkpoint; acked: SealedItem[] } | undefined
  #redact: ReturnType<typeof createRedactor> | undefined
  /** The rotated backups found at start, until the reader is past them. */
  #backfill: (Backlog & { lines: number; startedAt: number }) | undefined
  readonly #guard: Guard
  readonly #detectors: Detectors
  readonly #groups: FindingGroups
  readonly #groupChanges: GroupChange[] = []
  readonly #responder: Responder | undefined

  constructor(config: AgentConfig, deps: AgentDeps) {
    this.#config = config
    this.#deps = deps
    this.#log = deps.logger
    this.metrics = deps.metrics ?? new AgentMetrics()
    this.#guard = new Guard({ builtin: config.rules.builtin, dirs: config.rules.dirs, logger: this.#log, metrics: this.metrics, ...config.guard })
    this.#detectors = this.#loadDetectors()
    this.#groups = new FindingGroups((f) => (f.source === 'rule' ? this.#guard.rules : this.#detectors).groupOf(f.id))
    this.#responder = config.respond.enabled ? new Responder({ config: config.respond, node: config.node, logger: this.#log, metrics: this.metrics }) : undefined
    this.#key = new SigningKeyFile(config.signing.keyFile, { allowLoosePermissions: config.signing.allowLoosePermissions })
    this.#checkpoints = new CheckpointFile(config.stateDir)
    const c = config.collector
    this.#tls = new CollectorTls({ caFile: c.caFile, certFile: c.certFile, keyFile: c.keyFile })
    this.#dispatcher = peerDispatcher({ timeoutMs: c.timeoutMs, http2: c.http2, ...this.#tls.material })
    // What may wait for an acknowledgement, and the batches a read closes before the reader is held back.
    this.#batchRing = new BatchRing(Math.min(c.maxUnackedBytes + 2 * config.batch.maxBytes, MAX_BATCH_RING_BYTES))
    const collectors = new CollectorChoice(c.urls, c.failbackIntervalMs)
    for (const url of c.urls) this.metrics.sendingTo.set({ url }, url === collectors.current ? 1 : 0)
    this.#sender = new Sender({
      collectors,
      streamId: config.streamId,
      dispatcher: this.#dispatcher,
      timeoutMs: c.timeoutMs,
      maxUnackedBytes: c.maxUnackedBytes,
      maxBatchesPerRequest: c.maxBatchesPerRequest,
      maxRequestBytes: c.maxRequestBytes,
      compression: c.compression,
      retryInitialMs: c.retryInitialDelayMs,
      retryMaxMs: c.retryMaxDelayMs,
      onAck: (last, acked, latencyMs) => this.#onAck(last, acked, latencyMs),
      onFailure: (err, attempt, delayMs) => {
        this.metrics.sendFailures.inc({ reason: err.reason })
        const level = attempt === 1 || attempt % 10 === 0 ? 'warn' : 'debug'
        this.#log[level]({ reason: err.reason, attempt, retryInMs: delayMs }, err.message)
      },
      onSwitch: ({ from, to, reason }) => {
        this.metrics.failovers.inc({ url: to, reason })
        this.metrics.sendingTo.set({ url: from }, 0)
        this.metrics.sendingTo.set({ url: to }, 1)
        // URLs carry no credentials (config.ts refuses them), so they may be logged.
        if (reason === 'failback') this.#log.info({ from, to }, 'back on the preferred collector')
        else this.#log.warn({ from, to, reason }, `collector ${from} is not answering (${reason}); sending to ${to}`)
      },
    })
  }

  /** Like the guard: a broken user directory does not blind the node; the built-in detectors run and the log says why. */
  #loadDetectors(): Detectors {
    const { builtin, dirs } = this.#config.detectors
    try {
      return new Detectors({ builtin, dirs, metrics: this.metrics })
    } catch (err) {
      if (!(err instanceof AggregateError)) throw err
      this.#log.error({ errors: err.errors.map((e: Error) => e.message) }, 'anomaly detectors not loaded from detectors.dirs: fix the errors listed and restart; the built-in detectors run meanwhile')
      return new Detectors({ builtin, dirs: [], metrics: this.metrics })
    }
  }

  /** Ready: in sync with the collector, positioned in the log, and the collector answered recently. */
  get ready(): boolean {
    if (!this.#synced || this.#stopping) return false
    if (this.#sender.queuedBatches === 0) return true
    return !this.#sender.failing || Date.now() - this.#sender.lastSuccessMs < 3 * this.#config.batch.heartbeatIntervalMs
  }

  /** Loads the key and checkpoint, syncs the chain with the collector, and starts reading. */
  async start(): Promise<void> {
    if (this.#config.signing.createIfMissing) {
      const made = createSigningKeyIfMissing(this.#config.signing.keyFile)
      if (made) this.#log.warn({ keyId: made.keyId, publicKeyFile: made.publicKeyFile, publicKey: made.publicKeyPem }, 'made this node\'s signing key; the collector refuses its batches until its public key is in the collector\'s --trust directory (docs/install.md, step 3)')
    }
    await this.#key.reload()
    this.#log.info({ keyId: this.#key.current.keyId, streamId: this.#config.streamId, collectors: this.#config.collector.urls }, 'signing key loaded')
    const checkpoint = await this.#syncChain((await this.#checkpoints.load()) ?? { streamId: this.#config.streamId, nextSequence: 1, headDigest: Buffer.alloc(0), position: undefined })
    if (this.#stopping) return
    this.#checkpointPosition = checkpoint.position
    if (this.#config.redact.enabled) this.#redact = createRedactor({ salt: loadOrCreateSalt(this.#config.stateDir), extraPaths: this.#config.redact.extraPaths })
    const quarantine = new QuarantineDirectory(this.#config.quarantine.dir, this.#config.quarantine.maxBytes)
    this.#tailer = new Tailer({
      path: this.#config.tail.path,
      maxLineBytes: this.#config.tail.maxLineBytes,
      maxOpenFiles: this.#config.tail.maxOpenFiles,
      startAt: this.#config.tail.startAt,
      quarantine,
      onRotation: (from, to) => {
        this.metrics.rotations.inc()
        this.#log.info({ from, to }, 'following rotation')
      },
      onError: (err) => this.#log.error({ err: err.message }, 'tail problem'),
    })
    const backlog = await this.#tailer.start(checkpoint.position)
    if (!checkpoint.position) {
      // A first start: remember where reading began before anything is read, so that a crash before the
      // first acknowledgement resumes here (following that file into the backups), not from whatever
      // the oldest backup or the live file is by then.
      const position = this.#tailer.position()
      if (position) {
        this.#checkpointPosition = position
        await this.#checkpoints.save({ ...checkpoint, position })
      }
    }
    this.metrics.backfillFiles.set(backlog.files)
    if (backlog.files > 0) {
      this.#backfill = { ...backlog, lines: 0, startedAt: performance.now() }
      this.#log.info({ files: backlog.files, from: this.#tailer.position()?.path, startAt: checkpoint.position ? 'checkpoint' : this.#config.tail.startAt }, 'reading rotated backups before the live file')
    }
    this.#synced = true
    this.#batcher = new Batcher(
      { maxEvents: this.#config.batch.maxEvents, maxBytes: this.#config.batch.maxBytes, maxWaitMs: this.#config.batch.maxWaitMs },
      checkpoint.position,
    )
    this.#sealer = new Sealer(this.#config.streamId, this.#config.node, checkpoint, this.#key.current, this.#batchRing.alloc)
    this.#lastSealedAt = performance.now()
    this.#watchLogDir()
    await this.#guard.watch()
    this.#responder?.start()
    this.#timers.push(
      setInterval(() => {
        void this.#tailer?.discover().catch((err: Error) => this.#log.error({ err: err.message }, 'discovery failed'))
        this.#wakeUp()
      }, this.#config.tail.pollIntervalMs),
      setInterval(() => {
        void this.#reloadKey()
        this.#reloadTls()
      }, this.#config.signing.reloadIntervalMs),
      setInterval(() => void this.#updateLag(), 1000),
    )
    for (const t of this.#timers) t.unref()
    this.#loop = this.#run().catch((err: Error) => {
      this.#log.fatal({ err: err.message }, 'agent loop failed')
      throw err
    })
  }

  /** Stops reading, seals what was read, and waits up to `graceMs` for the collector to acknowledge it. */
  stop(graceMs = 5000): Promise<void> {
    this.#stopDone ??= this.#stop(graceMs)
    return this.#stopDone
  }

  async #stop(graceMs: number): Promise<void> {
    this.#stopping = true
    this.#stopSignal()
    this.#wakeUp()
    await this.#loop?.catch(() => {})
    for (const t of this.#timers) clearInterval(t)
    await this.#watcher?.close()
    await this.#guard.close()
    await this.#responder?.close()
    if (this.#batcher && this.#sealer) {
      const drafts: BatchDraft[] = []
      this.#batcher.takeDue(performance.now(), drafts, true)
      this.#sealAll(drafts)
    }
    const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref())
    await Promise.race([this.#sender.idle(), grace])
    await this.#sender.stop()
    // A failed checkpoint write was logged and is retried with the next acknowledgement; stopping goes on.
    await this.#checkpointWrites
    await this.#tailer?.close()
    await this.#dispatcher.destroy()
  }

  /** Resolves once everything read so far is acknowledged and checkpointed. */
  async drained(): Promise<void> {
    await this.#sender.idle()
    await this.#checkpointWrites
  }

  // --- the loop

  async #run(): Promise<void> {
    const tailer = this.#tailer!
    const batcher = this.#batcher!
    const drafts: BatchDraft[] = []
    const heartbeatMs = this.#config.batch.heartbeatIntervalMs
    while (!this.#stopping) {
      await Promise.race([this.#sender.waitForRoom(), this.#stopped])
      if (this.#stopping) break
      let chunk
      try {
        chunk = await tailer.read()
      } catch (err) {
        // An I/O error (EMFILE, EIO...): say so and try again; the position is unchanged.
        this.#log.error({ err: (err as Error).message }, 'reading the audit log failed; retrying')
        await this.#waitForChange(this.#config.tail.pollIntervalMs)
        continue
      }
      const now = performance.now()
      if (this.#backfill) this.#countBackfill(chunk)
      if (chunk.records.length > 0 || chunk.endOfFile) batcher.add(chunk, this.#process, now, drafts)
      batcher.takeDue(now, drafts)
      if (drafts.length === 0 && batcher.openedAt === undefined && now - this.#lastSealedAt >= heartbeatMs) {
        drafts.push(batcher.heartbeat(tailer.position() ?? this.#config.tail.path, now))
      }
      // The batcher encoded the chunk's lines into its drafts: the buffer they were read into is free.
      tailer.releaseReads()
      this.#sealAll(drafts)
      // Nothing new, or all there was: wait for more rather than read again at once. A live file written
      // line by line would otherwise be read in runs of a few lines, each with its reads and fstats (110
      // reads a second at 3,000 events/s); waiting, the next read takes what came meanwhile in one run.
      if (chunk.caughtUp || (chunk.bytesRead === 0 && chunk.records.length === 0 && !chunk.endOfFile)) {
        const openedAt = batcher.openedAt
        const dueIn = openedAt === undefined ? heartbeatMs - (now - this.#lastSealedAt) : this.#config.batch.maxWaitMs - (now - openedAt)
        await this.#waitForChange(Math.max(1, Math.min(dueIn, this.#config.tail.appendCheckIntervalMs)))
      }
    }
  }

  /** Counts the lines read from the backups found at start, and says once when the reader is past them. */
  #countBackfill(chunk: TailChunk): void {
    const b = this.#backfill!
    const rotatedAt = chunk.order.rotatedAt
    if (rotatedAt !== undefined && rotatedAt <= b.rotatedUntil) {
      let lines = 0
      for (const r of chunk.records) if (r.kind !== 'gap') lines++
      b.lines += lines
      this.metrics.backfillLines.inc(lines)
      if (!(chunk.endOfFile && rotatedAt === b.rotatedUntil)) return
    } else if (chunk.records.length === 0) {
      return
    }
    this.#log.info({ files: b.files, lines: b.lines, seconds: Math.round(performance.now() - b.startedAt) / 1000 }, 'read the rotated backups found at start; following the live file')
    this.#backfill = undefined
  }

  #sealAll(drafts: BatchDraft[]): void {
    for (const draft of drafts) {
      const item = this.#sealer!.seal(draft, this.#key.current, Date.now())
      this.metrics.batchesSealed.inc({ kind: draft.body.recordCount === 0 ? 'heartbeat' : 'events' })
      this.#batcher!.recycle(draft)
      this.#sender.enqueue(item)
      this.#lastSealedAt = performance.now()
    }
    drafts.length = 0
    this.metrics.unackedBytes.set(this.#sender.unackedBytes)
  }

  readonly #process = (r: TailRecord): ProcessedRecord => {
    const m = this.metrics
    switch (r.kind) {
      case 'gap':
        m.gaps.inc({ reason: r.gap.toOffset === 0 && r.gap.reason.includes('deleted') ? 'deleted' : 'truncated' })
        this.#log.error({ path: r.gap.path, fromOffset: r.gap.fromOffset }, `declaring a gap: ${r.gap.reason}`)
        return { record: { offset: r.offset, gap: r.gap }, findings: [], eventMs: 0 }
      case 'quarantine':
        m.countLine(r.quarantine.length + 1)
        m.quarantinedLines.inc({ stored: r.quarantine.storedAs ? 'true' : 'false' })
        this.#log.warn({ offset: r.offset, length: r.quarantine.length, storedAs: r.quarantine.storedAs }, r.quarantine.reason)
        return { record: { offset: r.offset, quarantine: r.quarantine }, findings: [], eventMs: 0 }
      case 'line':
        m.countLine(r.bytes.length + 1)
        return this.#processLine(r.offset, r.bytes, r.incomplete === true)
    }
  }

  #processLine(offset: number, line: Buffer, incomplete: boolean): ProcessedRecord {
    const decoded = decodeAuditLine(line)
    if ('unparsed' in decoded || incomplete) {
      const reason = incomplete ? INCOMPLETE_REASON : (decoded as { unparsed: string }).unparsed
      this.metrics.unparsedLines.inc({ reason: incomplete ? 'incomplete' : reason.split(':')[0]! })
      return { record: { offset, line, unparsedReason: reason }, findings: [], eventMs: 0 }
    }
    const event = decoded.event
    const findings: Omit<Finding, 'recordIndex'>[] = []
    const timeMs = eventTimeMs(event)
    this.#guard.inspect(event, findings)
    this.#detectors.inspect(event, findings, timeMs)
    this.#responder?.consider(event, findings)
    const changes = this.#groupChanges
    if (timeMs !== undefined) this.#groups.advance(timeMs, changes)
    for (const f of findings) {
      this.metrics.countFinding(f.source, f.id, f.severity)
      this.#groups.add(f, event, timeMs, changes)
    }
    // Responses finished since the last event ride in this event's batch (the responder's own request is
    // usually the next line); each names its cause (details.causeAuditId) and its own request's audit ID.
    if (this.#responder) {
      for (const { finding, cause } of this.#responder.takeFindings()) {
        findings.push(finding)
        this.metrics.countFinding(finding.source, finding.id, finding.severity)
        this.#groups.add(finding, cause as AuditEvent, undefined, changes)
      }
    }
    if (changes.length > 0) this.#groupsChanged(changes)
    const record: WireRecord = { offset, line }
    const redacted = this.#redactLine(line, event, offset)
    if (redacted) {
      record.line = redacted.line
      record.redactedPaths = redacted.paths
      this.metrics.redactedLines.inc()
    }
    return { record, findings, eventMs: timeMs ?? 0 }
  }

  /** Alerts follow the groups: one when a group opens, updates as it grows (the dispatcher's cool-down spaces them), one when it ends. */
  #groupsChanged(changes: GroupChange[]): void {
    for (const c of changes) {
      const f = c.group.first
      if (c.kind === 'open') this.metrics.findingGroups.inc({ source: f.source, id: f.id, severity: f.severity })
      this.#deps.onFinding?.(groupFinding(c), c.group.event as AuditEvent)
    }
    changes.length = 0
    this.metrics.findingGroupsOpen.set(this.#groups.size)
    if (this.#groups.evictions > 0) {
      this.metrics.findingGroupEvictions.inc(this.#groups.evictions)
      this.#groups.evictions = 0
    }
  }

  #redactLine(line: Buffer, event: AuditEvent, offset: number): { line: Buffer; paths: string[] } | undefined {
    try {
      return this.#redact?.(line, event)
    } catch (err) {
      if (!(err instanceof UnscannableLine)) throw err
      // It concerns a secret and its values cannot be located: withhold the whole line rather than ship them.
      this.#log.warn({ offset, reason: err.message }, 'a line about secrets could not be scanned for redaction; its contents are withheld')
      return { line: WITHHELD_LINE, paths: ['(the whole line)'] }
    }
  }

  // --- acknowledgements and the checkpoint

  #onAck(last: SealedItem, acked: SealedItem[], latencyMs: number): void {
    const m = this.metrics
    m.batchesAcknowledged.inc(acked.length)
    m.sendDuration.observe(latencyMs / 1000)
    const now = performance.now()
    for (const item of acked) {
      this.#batchRing.free(item.sealed.batch)
      if (item.recordCount > 0) m.appendToAck.observe((now - item.openedAt) / 1000)
      if (item.newestEventMs > this.#newestAckedEventMs) this.#newestAckedEventMs = item.newestEventMs
    }
    m.chainSequence.set(last.sequence)
    m.unackedBytes.set(this.#sender.unackedBytes)
    m.lastAckTimestamp.set(Date.now() / 1000)
    const position = acked.findLast((item) => item.position !== undefined)?.position ?? this.#checkpointPosition
    this.#checkpointPosition = position
    const checkpoint: Checkpoint = { streamId: this.#config.streamId, nextSequence: last.sequence + 1, headDigest: last.digest, position }
    this.#saveCheckpoint(checkpoint, acked)
  }

  /**
   * Writes the checkpoint beside the sending, not before the next request: a
   * write (temp file, fsync, rename, fsync) took 16% of the sender's time at
   * full speed. One write at a time; a newer checkpoint replaces one still
   * waiting. A crash before a write loses nothing: on start the agent finds the
   * collector ahead of its checkpoint and continues after the collector's head
   * (#syncChain), whose position is signed by this node.
   */
  #saveCheckpoint(checkpoint: Checkpoint, acked: SealedItem[]): void {
    this.#pendingCheckpoint = { checkpoint, acked: [...(this.#pendingCheckpoint?.acked ?? []), ...acked] }
    this.#checkpointWrites ??= this.#writeCheckpoints().finally(() => {
      this.#checkpointWrites = undefined
    })
  }

  async #writeCheckpoints(): Promise<void> {
    for (let next = this.#pendingCheckpoint; next; next = this.#pendingCheckpoint) {
      this.#pendingCheckpoint = undefined
      try {
        await this.#checkpoints.save(next.checkpoint)
      } catch (err) {
        this.#log.error({ err: (err as Error).message, nextSequence: next.checkpoint.nextSequence }, 'writing the checkpoint failed; the next acknowledgement writes it again')
        continue
      }
      this.metrics.checkpointTimestamp.set(Date.now() / 1000)
      this.#deps.onAcknowledged?.(next.acked)
    }
  }

  /**
   * Makes the checkpoint agree with the collector's stream head, which must be
   * signed by this node's key. When the two disagree, reading resumes from the
   * older of them, never by skipping: the collector ahead (the agent died
   * between the collector's ack and its own checkpoint write) means continuing
   * after its head instead of sealing a fork; the collector behind (its store
   * lost batches, or an acknowledgement was false) means reading again from
   * after its head, so that what it lacks is sent again. A different batch
   * under the same sequence needs an operator.
   */
  async #syncChain(cp: Checkpoint): Promise<Checkpoint> {
    if (cp.streamId !== this.#config.streamId) {
      throw new ChainError(`checkpoint ${this.#checkpoints.path} belongs to stream ${cp.streamId}, but this agent is configured as ${this.#config.streamId}; use another --state-dir, or move the checkpoint away to start the new stream where tail.startAt says`)
    }
    const head = await this.#fetchHead()
    if (this.#stopping) return cp
    const expectedHead = cp.nextSequence - 1
    if (!head) {
      if (expectedHead === 0) return cp
      this.#log.warn({ acknowledgedBefore: expectedHead }, `the collector holds nothing of stream ${this.#config.streamId}, though batch ${expectedHead} was acknowledged: reading again from the start, as a new chain`)
      return { streamId: cp.streamId, nextSequence: 1, headDigest: Buffer.alloc(0), position: undefined }
    }
    const key = this.#key.current
    if (head.keyId !== key.keyId) {
      throw new ChainError(`stream ${this.#config.streamId} belongs to key ${head.keyId} (its head is signed by it), but this agent signs with ${key.keyId}. Rotate keys while the agent runs (replace the key file: the agent endorses the new key with the old one), or give this key a new --stream-id`)
    }
    const digest = batchDigest(head.batch)
    if (!verifySeal(digest, head.signature, key.publicKey)) {
      throw new ChainError(`the collector's head of stream ${this.#config.streamId} does not verify with this node's key ${key.keyId}; refusing to continue after it`)
    }
    const batch = decodeBatch(head.batch)
    if (batch.sequence === expectedHead) {
      if (!digest.equals(cp.headDigest)) throw new ChainError(`the collector's batch ${batch.sequence} differs from the one this agent sealed: another agent writes to stream ${this.#config.streamId}? Give each agent its own --stream-id`)
      return cp
    }
    if (batch.sequence < expectedHead) {
      this.#log.warn({ collectorHead: batch.sequence, acknowledgedBefore: expectedHead }, `the collector's stream ${this.#config.streamId} ends before what was acknowledged: reading again from after its head, so that nothing is skipped`)
    } else {
      this.#log.info({ from: cp.nextSequence, to: batch.sequence + 1 }, 'the collector holds batches this agent had not checkpointed yet; continuing after them')
    }
    return { streamId: cp.streamId, nextSequence: batch.sequence + 1, headDigest: digest, position: positionAfter(batch) ?? cp.position }
  }

  async #fetchHead() {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#sender.streamHead(this.#key.current)
      } catch (err) {
        if (this.#stopping) return undefined
        if (!(err instanceof SendError) || ['unauthenticated', 'permission_denied', 'invalid_argument', 'unimplemented'].includes(err.reason)) throw err
        const delay = backoffMs(attempt, this.#config.collector.retryInitialDelayMs, this.#config.collector.retryMaxDelayMs)
        this.metrics.sendFailures.inc({ reason: err.reason })
        this.#log.warn({ attempt, retryInMs: delay }, `cannot get the stream head yet: ${err.message}`)
        await new Promise((resolve) => setTimeout(resolve, delay))
      }
    }
  }

  // --- waking up

  // New lines are found by the reader itself: idle, it checks the size of the file it holds every
  // tail.appendCheckInterval (an fstat). The directory is polled, not watched with inotify: inotify
  // reports every append to the live file (one per event written, 3,000/s on a busy apiserver),
  // and chokidar handling each one cost 14% of a core at that rate (7% with the live file ignored),
  // against under 1% for polling. A reader at the end of the live file notices a rotation itself
  // (Tailer.read); new backups are otherwise found by this poll and the timer, within tail.pollInterval.
  #watchLogDir(): void {
    const naming = backupNaming(this.#config.tail.path)
    const interval = this.#config.tail.pollIntervalMs
    this.#watcher = watch(naming.dir, { depth: 0, ignoreInitial: true, persistent: false, usePolling: true, interval, binaryInterval: interval })
    this.#watcher.on('all', (event, path) => {
      const name = path.slice(naming.dir.length + 1)
      if (name !== naming.liveName && !naming.parse(name)) return
      if (event !== 'change') void this.#tailer?.discover().catch((err: Error) => this.#log.error({ err: err.message }, 'discovery failed'))
      this.#wakeUp()
    })
    this.#watcher.on('error', (err) => this.#log.warn({ err: (err as Error).message }, 'file watcher error; polling continues'))
  }

  #waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      const self = this
      function done() {
        clearTimeout(timer)
        if (self.#wake === done) self.#wake = undefined
        resolve()
      }
      this.#wake = done
    })
  }

  #wakeUp(): void {
    this.#wake?.()
  }

  async #reloadKey(): Promise<void> {
    try {
      if (await this.#key.reload()) this.#log.info({ keyId: this.#key.current.keyId }, 'signing key changed; the next batch is signed with the new key')
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'cannot reload the signing key; still signing with the previous one')
    }
  }

  /** A renewed collector CA or client certificate (a rotated Secret) takes effect for new connections. */
  #reloadTls(): void {
    try {
      if (!this.#tls.reload()) return
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'cannot reload the TLS files for the collector; still using the previous ones')
      return
    }
    const next = peerDispatcher({ timeoutMs: this.#config.collector.timeoutMs, http2: this.#config.collector.http2, ...this.#tls.material })
    const previous = this.#sender.useDispatcher(next)
    this.#dispatcher = next
    // Requests in flight finish on the old connections; then they close.
    void previous.close().catch(() => {})
    this.#log.info('TLS files for the collector changed; new connections use them')
  }

  async #updateLag(): Promise<void> {
    const lag = await this.#tailer?.lagBytes().catch(() => undefined)
    if (lag !== undefined) this.metrics.lagBytes.set(lag)
    if (this.#newestAckedEventMs > 0) this.metrics.lagSeconds.set(Math.max(0, (Date.now() - this.#newestAckedEventMs) / 1000))
  }
}

/** Where reading resumes after a stored batch; undefined for a heartbeat sealed before any log file existed. */
function positionAfter(batch: Batch): TailPosition | undefined {
  const s = batch.source
  if (s.device === 0 && s.inode === 0 && batch.records.length === 0) return undefined
  return {
    path: s.path,
    identity: { device: s.device, inode: s.inode, fingerprint: Buffer.from(s.fingerprint), fingerprintLength: s.fingerprintLength },
    order: { ...(s.rotatedUnixMs ? { rotatedAt: s.rotatedUnixMs } : {}), liveAfter: s.liveAfterUnixMs },
    offset: s.endOffset,
    endOfFile: s.endOfFile,
  }
}
