// The collector's service as the official Connect client sees it: its descriptor, built from
// proto/auditrail/v2/collector.proto at run time (no code generation step in this repository).
import { createFileRegistry, fromBinary, type DescService } from '@bufbuild/protobuf'
import { createClient, type Transport } from '@connectrpc/connect'
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt'
import protobuf from 'protobufjs'
import descriptor from 'protobufjs/ext/descriptor/index.js'
import type { SealedBatch } from '../../proto/wire.ts'

const PACKAGE = 'auditrail.v2'
/** The service's own messages; Batch and what it holds travel as bytes inside SealedBatch, so the client needs none of them. */
const SERVICE_MESSAGES = new Set(['PushBatchRequest', 'PushBatchResponse', 'GetStreamHeadRequest', 'GetStreamHeadResponse', 'SealedBatch'])

interface Described { name: string; field?: Array<{ name: string; typeName?: string; jsonName?: string }>; method?: Array<{ inputType: string; outputType: string }> }

function collectorService(): DescService {
  const root = protobuf.loadSync(new URL('../../proto/auditrail/v2/collector.proto', import.meta.url).pathname) as protobuf.Root & { toDescriptor(syntax: string): { file: Array<{ messageType: Described[]; service: Described[] }> } }
  const set = root.toDescriptor('proto3')
  // protobufjs writes type names relative to the package; a descriptor has them fully qualified.
  const qualify = (name: string) => (name.startsWith('.') ? name : `.${PACKAGE}.${name}`)
  for (const file of set.file) {
    file.messageType = file.messageType.filter((m) => SERVICE_MESSAGES.has(m.name))
    for (const m of file.messageType) {
      for (const f of m.field ?? []) {
        if (f.typeName) f.typeName = qualify(f.typeName)
        // protobufjs leaves it empty where it equals the name; an empty one would be taken as the JSON name.
        f.jsonName ||= f.name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
      }
    }
    for (const s of file.service) for (const method of s.method ?? []) Object.assign(method, { inputType: qualify(method.inputType), outputType: qualify(method.outputType) })
  }
  const bytes = (descriptor as unknown as { FileDescriptorSet: protobuf.Type }).FileDescriptorSet.encode(set).finish()
  const service = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes)).getService(`${PACKAGE}.CollectorService`)
  if (!service) throw new Error(`${PACKAGE}.CollectorService is not in collector.proto`)
  return service
}

/** The client's messages, typed here: a descriptor built at run time leaves them untyped. */
export interface CollectorClient {
  pushBatch(request: { batches: SealedBatch[] }): Promise<{ streamId: string; acknowledgedSequence: bigint }>
  getStreamHead(request: { streamId: string; keyId: string; issuedUnixMs: bigint; signature: Uint8Array }): Promise<{ head?: SealedBatch }>
}

export function collectorClient(transport: Transport): CollectorClient {
  return createClient(collectorService(), transport) as unknown as CollectorClient
}
