// Wire formats: Kafka command decoding, the event envelope, binary COPY rows.
export { decodeCommand, isUuid, type Decoded, type DlqCode } from './command';
export { CopyWriter, PGCOPY_HEADER, PGCOPY_TRAILER } from './pgcopy';
export { encodeEnvelope, parseEnvelope, newEventId, type EventEnvelope, type EnvelopeError } from './envelope';
