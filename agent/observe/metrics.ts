// Every metric the agent exposes, in one place, named by Prometheus
// conventions (auditrail_ prefix, _total counters, base units). Label values
// are bounded sets (reasons, rule ids, severities): never user data.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

interface FindingCount {
  labels: Record<'source' | 'id' | 'severity', string>
  n: number
}

export class AgentMetrics {
  readonly registry = new Registry()

  // Lines and findings are counted on every event: in plain numbers (countLine, countFinding), added to
  // their counters when those are read (a scrape, get()). prom-client's inc() builds and hashes a labels
  // object per call: 0.4 KB of garbage per event at full speed.
  #lines = 0
  #bytes = 0
  /** By source, then id, then severity: three lookups of strings the rules hold, no key built per finding. */
  readonly #findingCounts = new Map<string, Map<string, Map<string, FindingCount>>>()

  readonly linesRead = this.#counter('auditrail_lines_read_total', 'Audit log lines read (complete lines, quarantined lines included).', [], () => {
    if (this.#lines > 0) this.linesRead.inc(this.#lines)
    this.#lines = 0
  })
  readonly bytesRead = this.#counter('auditrail_bytes_read_total', 'Bytes of audit log read.', [], () => {
    if (this.#bytes > 0) this.bytesRead.inc(this.#bytes)
    this.#bytes = 0
  })
  readonly unparsedLines = this.#counter('auditrail_unparsed_lines_total', 'Lines shipped as evidence but not valid audit events, by reason.', ['reason'])
  readonly quarantinedLines = this.#counter('auditrail_quarantined_lines_total', 'Lines over the length limit, kept on the node and replaced by a quarantine record, by whether their bytes were kept.', ['stored'])
  readonly gaps = this.#counter('auditrail_gaps_total', 'Declared losses: data removed or truncated before the agent could read it.', ['reason'])
  readonly rotations = this.#counter('auditrail_rotations_total', 'Files finished and followed to the next one (rotation, truncation, re-creation).')
  readonly backfillFiles = this.#gauge('auditrail_backfill_files', 'Rotated backups waiting ahead of the live file when the agent started: the first start\'s backfill (tail.startAt: oldest), or the backlog after downtime.')
  readonly backfillLines = this.#counter('auditrail_backfill_lines_total', 'Lines read from the rotated backups that were waiting when the agent started (included in auditrail_lines_read_total).')
  readonly redactedLines = this.#counter('auditrail_redacted_lines_total', 'Lines whose secret values were replaced before shipping.')
  readonly findings = this.#counter('auditrail_findings_total', 'Matched events (one finding each, in the event\'s sealed batch), by source, id and severity.', ['source', 'id', 'severity'], () => {
    for (const ids of this.#findingCounts.values()) {
      for (const severities of ids.values()) {
        for (const count of severities.values()) {
          if (count.n > 0) this.findings.inc(count.labels, count.n)
          count.n = 0
        }
      }
    }
  })
  readonly findingGroups = this.#counter('auditrail_finding_groups_total', 'Finding groups opened (what people are alerted on: one per incident, past its threshold), by source, id and severity.', ['source', 'id', 'severity'])
  readonly findingGroupsOpen = this.#gauge('auditrail_finding_groups_open', 'Finding groups held (open, or below their threshold); bounded.')
  readonly findingGroupEvictions = this.#counter('auditrail_finding_group_evictions_total', 'Finding groups dropped because the bound was reached (the least recently grown go first); an evicted group gets no end alert.')
  readonly rulesLoaded = this.#gauge('auditrail_rules_loaded', 'Guardrail rules running (enabled rules of the built-in pack and the user\'s directories).')
  readonly ruleLoads = this.#counter('auditrail_rule_loads_total', 'Loads of the rule directories (start-up and each change on disk), by result; on error the rules loaded before keep running.', ['result'])
  readonly detectorKeys = new Gauge({ name: 'auditrail_detector_keys', help: 'Keys (users, source IPs, pending requests...) an anomaly detector holds state for; bounded by its maxKeys.', labelNames: ['detector'], registers: [this.registry] })
  readonly detectorEvictions = this.#counter('auditrail_detector_evictions_total', 'Keys an anomaly detector dropped because it held its maximum (the least recently seen go first).', ['detector'])
  readonly batchesSealed = this.#counter('auditrail_batches_sealed_total', 'Batches sealed, by kind (events, heartbeat).', ['kind'])
  readonly batchesAcknowledged = this.#counter('auditrail_batches_acknowledged_total', 'Batches the collector acknowledged.')
  readonly sendFailures = this.#counter('auditrail_send_failures_total', 'Failed requests to the collector, by reason; each is retried.', ['reason'])
  // `url` takes the configured collector URLs only (collector.urls, at most 8): a bounded label set.
  readonly sendingTo = this.#gauge('auditrail_sending_to', 'Which configured collector the agent sends to: 1 for the current one, 0 for the others, by url (collector.urls).', ['url'])
  readonly failovers = this.#counter('auditrail_failovers_total', 'Moves from one configured collector to another, by the url moved to and reason (transport, timeout, unavailable: a failover; failback: back on the preferred one).', ['url', 'reason'])
  readonly sendDuration = new Histogram({
    name: 'auditrail_send_duration_seconds',
    help: 'Time from sending a request to the collector to its acknowledgement.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  })
  readonly appendToAck = new Histogram({
    name: 'auditrail_append_to_ack_seconds',
    help: 'Time from a batch being opened (its first line read) to its acknowledgement.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  })
  readonly chainSequence = this.#gauge('auditrail_chain_sequence', 'Sequence number of the last acknowledged batch.')
  readonly unackedBytes = this.#gauge('auditrail_unacknowledged_bytes', 'Sealed bytes waiting for the collector\'s acknowledgement (bounded; reading pauses above the bound).')
  readonly lagBytes = this.#gauge('auditrail_lag_bytes', 'Bytes between the reader and the end of the live audit log.')
  readonly lagSeconds = this.#gauge('auditrail_lag_seconds', 'Now minus the event time of the newest acknowledged event.')
  readonly checkpointTimestamp = this.#gauge('auditrail_checkpoint_timestamp_seconds', 'When the checkpoint was last written, Unix seconds.')
  readonly lastAckTimestamp = this.#gauge('auditrail_last_acknowledgement_timestamp_seconds', 'When the collector last acknowledged a batch, Unix seconds.')
  // Alerts (agent/alert): `sink` is alertmanager or webhook.
  readonly alertsSent = this.#counter('auditrail_alerts_sent_total', 'Alerts a sink accepted, by sink.', ['sink'])
  readonly alertSendFailures = this.#counter('auditrail_alert_send_failures_total', 'Failed alert requests, by sink and reason (transport, timeout, http_4xx, http_5xx); retried up to alert.retry unless the receiver refused the alerts for good.', ['sink', 'reason'])
  readonly alertsDropped = this.#counter('auditrail_alerts_dropped_total', 'Alerts given up, by sink and reason (queue_full, retries_exhausted, rejected, closed).', ['sink', 'reason'])
  readonly alertsDeduplicated = this.#counter('auditrail_alerts_deduplicated_total', 'Findings not alerted because the same finding was alerted within alert.coolDown.')
  // Responders (agent/respond): `action` is one of four, `outcome` dry_run, done, gone, failed or dropped.
  readonly responses = this.#counter('auditrail_responses_total', 'Responses to findings, by action (delete-pod, delete-binding, scale-to-zero, quarantine) and outcome (dry_run: reported only; done; gone: the object was gone already; failed: the API server refused or did not answer within respond.maxAttempts; dropped: the queue was full or the agent stopped).', ['action', 'outcome'])
  readonly responsesSkipped = this.#counter('auditrail_responses_skipped_total', 'Findings a response policy selected but that got no response, by reason (blocked_at_admission, not_served, too_old, excluded_namespace, system_identity, excluded_user, own_identity, not_applicable, duplicate).', ['reason'])
  readonly responseQueueLength = this.#gauge('auditrail_response_queue_length', 'Responses waiting for the rate limit (bounded by respond.queueSize).')
  readonly alertQueueLength = this.#gauge('auditrail_alert_queue_length', 'Alerts waiting to be sent, by sink (bounded by alert.queueSize).', ['sink'])
  readonly alertDelay = new Histogram({
    name: 'auditrail_alert_delay_seconds',
    help: 'Time from a finding being offered for alerting to a sink accepting it, by sink.',
    labelNames: ['sink'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  })

  constructor() {
    collectDefaultMetrics({ register: this.registry })
    // prom-client names these gauges with a _total suffix, which Prometheus reserves for counters (promtool flags it).
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name)
  }

  /** A line of `bytes` bytes (its newline included) was read. */
  countLine(bytes: number): void {
    this.#lines++
    this.#bytes += bytes
  }

  /** An event matched; the label set stays bounded: sources, rule and detector ids, severities. */
  countFinding(source: string, id: string, severity: string): void {
    let ids = this.#findingCounts.get(source)
    if (!ids) this.#findingCounts.set(source, (ids = new Map()))
    let severities = ids.get(id)
    if (!severities) ids.set(id, (severities = new Map()))
    const count = severities.get(severity)
    if (count) count.n++
    else severities.set(severity, { labels: { source, id, severity }, n: 1 })
  }

  #counter(name: string, help: string, labelNames: string[] = [], collect?: () => void): Counter<string> {
    return new Counter({ name, help, labelNames, registers: [this.registry], ...(collect ? { collect } : {}) })
  }

  #gauge(name: string, help: string, labelNames: string[] = []): Gauge<string> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] })
  }
}
