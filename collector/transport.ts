// How the collector's two procedures are carried: the codecs a request may use,
// chosen by its content type. Each turns a body into the typed request of
// proto/wire.ts and a typed answer into a body, so that the checks in server.ts
// never depend on the codec.
import { JSON_CONTENT_TYPE, decodeGetStreamHeadRequestJson, decodePushBatchRequestJson, encodeGetStreamHeadResponseJson, encodePushBatchResponseJson } from '../proto/connect-json.ts'
import { PROTO_CONTENT_TYPE } from '../proto/connect.ts'
import {
  decodeGetStreamHeadRequest,
  decodePushBatchRequest,
  encodeGetStreamHeadResponse,
  encodePushBatchResponse,
  type GetStreamHeadRequest,
  type PushBatchResponse,
  type SealedBatch,
  type WireLimits,
} from '../proto/wire.ts'

export interface Codec {
  /** As metrics name it. */
  name: 'proto' | 'json'
  contentType: string
  decodePushBatchRequest(body: Uint8Array, limits: WireLimits): SealedBatch[]
  decodeGetStreamHeadRequest(body: Uint8Array): GetStreamHeadRequest
  encodePushBatchResponse(r: PushBatchResponse): Uint8Array
  encodeGetStreamHeadResponse(head: SealedBatch | undefined): Uint8Array
}

const CODECS: readonly Codec[] = [
  {
    name: 'proto',
    contentType: PROTO_CONTENT_TYPE,
    decodePushBatchRequest,
    decodeGetStreamHeadRequest,
    encodePushBatchResponse,
    encodeGetStreamHeadResponse,
  },
  {
    name: 'json',
    contentType: JSON_CONTENT_TYPE,
    decodePushBatchRequest: decodePushBatchRequestJson,
    decodeGetStreamHeadRequest: decodeGetStreamHeadRequestJson,
    encodePushBatchResponse: encodePushBatchResponseJson,
    encodeGetStreamHeadResponse: encodeGetStreamHeadResponseJson,
  },
]

/** The content types a Connect unary request may have, for error messages. */
export const CONTENT_TYPES = CODECS.map((c) => c.contentType).join(' or ')

/** The media type of a Content-Type header, parameters (charset) left out. */
export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';', 1)[0]!.trim().toLowerCase()
}

/** The Connect codec of a request by its Content-Type; undefined for any other (refused with 415). */
export function connectCodec(contentType: string | undefined): Codec | undefined {
  const type = mediaType(contentType)
  return CODECS.find((c) => c.contentType === type)
}
