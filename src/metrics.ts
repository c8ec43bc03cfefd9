/**
 * Every metric banking-es exports, defined in one place on an injected
 * registry (tests use a fresh one). Names follow Prometheus conventions:
 * banking_es_<thing>_<unit>, counters end in _total.
 */
import { Registry, Counter, Gauge, Histogram, collectDefaultMetrics } from 'prom-client';

const BATCH_BUCKETS = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000];
const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Stages are short: finer at the bottom, to tell 2 ms from 5 ms. */
const STAGE_BUCKETS = [0.0005, 0.001, 0.002, 0.004, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5];

/**
 * Where a message's time goes, one stage after the other (docs/metrics.md):
 * fetch (produced → consumed, by the Kafka timestamp), batch (consumed → its
 * batch sealed), prepare (state loads and the workers; worker is the workers'
 * part of it), wait (prepared → its commit starts, behind the batch before),
 * write (the role's rows: COPY and checks), commit (offsets and COMMIT),
 * publish (committed → every outcome acknowledged by Kafka).
 */
export const STAGES = ['fetch', 'batch', 'prepare', 'worker', 'wait', 'write', 'commit', 'publish'] as const;
export type Stage = (typeof STAGES)[number];

export function createMetrics(registry: Registry = new Registry(), opts: { defaultMetrics?: boolean } = {}) {
  if (opts.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry, prefix: 'banking_es_' });
    // prom-client's gauges named *_total break Prometheus's naming rule (promtool rejects them); the
    // same counts stay by type in banking_es_nodejs_active_{handles,requests,resources}{type}: sum them
    for (const kind of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`banking_es_nodejs_active_${kind}_total`);
  }
  const r = [registry];
  return {
    registry,
    commands: new Counter({ name: 'banking_es_commands_total', help: 'Commands answered, by type and outcome status; each message read once (outcomes re-published after a crash are in banking_es_outcomes_republished_total).', labelNames: ['type', 'status'] as const, registers: r }),
    rejections: new Counter({ name: 'banking_es_command_rejections_total', help: 'Rejected commands by reason code.', labelNames: ['reason'] as const, registers: r }),
    eventsAppended: new Counter({ name: 'banking_es_events_appended_total', help: 'Events committed to the event store.', registers: r }),
    batchSize: new Histogram({ name: 'banking_es_batch_size', help: 'Messages per flushed batch, per sink.', labelNames: ['sink'] as const, buckets: BATCH_BUCKETS, registers: r }),
    stage: new Histogram({ name: 'banking_es_pipeline_stage_seconds', help: 'Time spent in each stage, per pipeline: fetch once per consume call (its oldest message, 0..60 s only), batch/prepare/worker/wait once per batch, write/commit/publish once per committed transaction. Stages: fetch, batch, prepare, worker (part of prepare), wait, write, commit, publish.', labelNames: ['pipeline', 'stage'] as const, buckets: STAGE_BUCKETS, registers: r }),
    flushDuration: new Histogram({ name: 'banking_es_flush_duration_seconds', help: 'Time to process and commit one batch, per sink.', labelNames: ['sink'] as const, buckets: SECONDS_BUCKETS, registers: r }),
    consumerLag: new Gauge({ name: 'banking_es_consumer_lag_messages', help: 'High watermark minus next offset, per consumed partition.', labelNames: ['group', 'topic', 'partition'] as const, registers: r }),
    dlq: new Counter({ name: 'banking_es_dlq_messages_total', help: 'Messages sent to a dead-letter topic, by reason code.', labelNames: ['topic', 'reason'] as const, registers: r }),
    occConflicts: new Counter({ name: 'banking_es_occ_conflicts_total', help: 'Batches retried because another writer held an event key (or a duplicate surfaced at commit).', registers: r }),
    refundRoomRedos: new Counter({ name: 'banking_es_refund_room_redos_total', help: 'Batches decided again from Postgres because a deposit or credit, decided on a cached state, left no room to refund the account\'s transfers in flight (redone, it is refused LIMIT_EXCEEDED unless a credit settled one of them meanwhile).', labelNames: ['pipeline'] as const, registers: r }),
    inFlight: new Gauge({ name: 'banking_es_in_flight_messages', help: 'Messages consumed but not yet committed, per pipeline.', labelNames: ['pipeline'] as const, registers: r }),
    paused: new Gauge({ name: 'banking_es_consumer_paused', help: '1 while consumption is paused, per pipeline: backpressure, or what was consumed draining before a partition is rewound.', labelNames: ['pipeline'] as const, registers: r }),
    workerUtilization: new Gauge({ name: 'banking_es_worker_pool_utilization_ratio', help: 'piscina pool utilization (0..1): mean task run time relative to the pool capacity, as piscina reports it, per pipeline (each has its own pool).', labelNames: ['pipeline'] as const, registers: r }),
    workerQueue: new Gauge({ name: 'banking_es_worker_pool_queue_size', help: 'Tasks waiting for a worker thread, per pipeline.', labelNames: ['pipeline'] as const, registers: r }),
    stateLookups: new Counter({ name: 'banking_es_state_lookups_total', help: 'Account states a command batch needed, by where they were found: memory (the in-process cache, or a batch still committing), redis, or postgres (the authority; new accounts are looked up there too, and careful redos read only there).', labelNames: ['answered'] as const, registers: r }),
    statesUnknown: new Counter({ name: 'banking_es_state_cache_unknown_total', help: 'Account states from Redis a batch decided on that Postgres does not hold at their version (with their balance, currency and status): newer than Postgres, or another ledger\'s (a Redis shared by two deployments, or one that outlived a restore of Postgres); each makes the batch decided again from Postgres and is dropped from the caches.', registers: r }),
    stateEvictions: new Counter({ name: 'banking_es_state_cache_evictions_total', help: 'Account states dropped from the in-process cache because it held pipeline.stateCacheSize.', registers: r }),
    stateCached: new Gauge({ name: 'banking_es_state_cache_accounts', help: 'Account states held in the in-process cache.', registers: r }),
    ready: new Gauge({ name: 'banking_es_ready', help: '1 while /readyz answers 200 (checked every 5 s and on each /readyz); 0 while starting, stopping, or while a required check fails: banking_es_dependency_up{dependency} says which.', registers: r }),
    pipelineStalled: new Gauge({ name: 'banking_es_pipeline_stalled', help: '1 while a pipeline has failed pipeline.maxRetries attempts in a row, or stopped on a fatal error; /readyz says why.', labelNames: ['pipeline'] as const, registers: r }),
    outcomesRepublished: new Counter({ name: 'banking_es_outcomes_republished_total', help: 'Outcomes published again: for commands committed before a crash whose outcomes were not recorded as published, or replayed after a delivery Kafka did not acknowledge (a partition rewind); a graceful hand-over records them first.', registers: r }),
    outcomePartitionsFrozen: new Gauge({ name: 'banking_es_outcome_partitions_frozen', help: 'Partitions with outcomes (or transfer steps) Kafka did not acknowledge and that are not yet published again (the partition is being rewound), per pipeline.', labelNames: ['pipeline'] as const, registers: r }),
    redisUp: new Gauge({ name: 'banking_es_redis_up', help: '1 when Redis is configured and reachable, 0 when configured and down.', registers: r }),
    dependencyUp: new Gauge({ name: 'banking_es_dependency_up', help: '1 when a dependency answered its last readiness probe.', labelNames: ['dependency'] as const, registers: r }),
    retries: new Counter({ name: 'banking_es_retries_total', help: 'Failed attempts (then retried, isolated or stopped on), by component and SQLSTATE or code.', labelNames: ['component', 'code'] as const, registers: r }),
    topicMissing: new Gauge({ name: 'banking_es_topic_missing', help: '1 while a topic a role reads or writes does not exist (the role is not ready); 0 once it does.', labelNames: ['topic'] as const, registers: r }),
    consumerPartitions: new Gauge({ name: 'banking_es_consumer_partitions_owned', help: 'Partitions a consumer owns and consumes from (set once their start offsets are resolved; 0 after a revoke).', labelNames: ['consumer'] as const, registers: r }),
    relayStreaming: new Gauge({ name: 'banking_es_relay_streaming', help: '1 while the logical relay streams from its replication slot (0 while another instance holds it, or reconnecting).', labelNames: ['slot'] as const, registers: r }),
    consumerUnassignedSeconds: new Gauge({ name: 'banking_es_consumer_unassigned_seconds', help: 'How long a consumer has owned no partition (0 while it owns some). Information: an instance beyond the partition count legitimately owns none.', labelNames: ['consumer'] as const, registers: r }),
    consumerGroupState: new Gauge({ name: 'banking_es_consumer_group_state', help: "1 for the consumer's current group state as librdkafka reports it (cgrp.state: init, wait-coord, up, …; join_state in the label join).", labelNames: ['consumer', 'state', 'join'] as const, registers: r }),
    partitionsStopped: new Gauge({ name: 'banking_es_partitions_stopped', help: 'Partitions this instance owns and has stopped because their stored offset is out of range (commands lost before they were read); /readyz answers 503 while it is above 0.', labelNames: ['topic'] as const, registers: r }),
    errors: new Counter({ name: 'banking_es_errors_total', help: 'Errors by component and code.', labelNames: ['component', 'code'] as const, registers: r }),
    outcomesPublished: new Counter({ name: 'banking_es_outcomes_published_total', help: 'Outcomes acknowledged by Kafka.', registers: r }),
    rdkafkaStat: new Gauge({ name: 'banking_es_rdkafka', help: 'librdkafka statistics (statistics.interval.ms), by client and stat name.', labelNames: ['client', 'stat'] as const, registers: r }),
    transfersCompleted: new Counter({ name: 'banking_es_transfers_completed_total', help: 'Transfers settled by the transfer process, by result: credited (the money moved) or refunded (the destination refused; the source got it back).', labelNames: ['result'] as const, registers: r }),
    transfersInFlight: new Gauge({ name: 'banking_es_transfers_in_flight', help: 'Transfers debited and neither credited nor refunded yet, per currency, as the transfers table holds them (read every 5 s by the transfers role).', labelNames: ['currency'] as const, registers: r }),
    transfersOldestSeconds: new Gauge({ name: 'banking_es_transfers_oldest_seconds', help: 'Age of the oldest transfer in flight (0 when none): a transfer older than the alert bound is stuck.', registers: r }),
    projectionLagSeconds: new Gauge({ name: 'banking_es_projection_lag_seconds', help: 'Age of the newest projected event when it was committed.', registers: r }),
    eventsProjected: new Counter({ name: 'banking_es_projection_events_total', help: 'Events consumed by the projection pipeline, by result: applied, stale (already projected, dropped), tombstone (Debezium delete, skipped), dlq.', labelNames: ['result'] as const, registers: r }),
    projectionGaps: new Counter({ name: 'banking_es_projection_gaps_total', help: 'Events projected although earlier versions of their account never reached the projector (history started mid-stream).', registers: r }),
    relayEventsPublished: new Counter({ name: 'banking_es_relay_events_published_total', help: 'Events the CDC relay published to the event topic and Kafka acknowledged, by relay mode.', labelNames: ['mode'] as const, registers: r }),
    relaySlotLagBytes: new Gauge({ name: 'banking_es_relay_slot_lag_bytes', help: 'WAL the logical-replication relay has not confirmed yet: pg_current_wal_lsn() - confirmed_flush_lsn of its slot.', labelNames: ['slot'] as const, registers: r }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Feeds the scalar parts of a librdkafka statistics JSON blob into gauges. */
export function recordRdkafkaStats(metrics: Metrics, client: string, statsJson: string): void {
  let s: Record<string, unknown>;
  try {
    s = JSON.parse(statsJson) as Record<string, unknown>;
  } catch {
    return;
  }
  for (const key of ['replyq', 'msg_cnt', 'msg_size', 'tx', 'rx', 'txmsgs', 'rxmsgs', 'tx_bytes', 'rx_bytes']) {
    const v = s[key];
    if (typeof v === 'number') metrics.rdkafkaStat.set({ client, stat: key }, v);
  }
}
