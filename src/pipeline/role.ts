/**
 * What a role (commands, projections) gives the partitioned-pipeline core:
 * only what differs between them, how a batch is prepared and what it
 * writes. Everything else (the consumer, backpressure, lag, the classified
 * retry loop, dead letters, the one transaction with the offsets) is the
 * core's (docs/architecture.md §9).
 */
import type { PoolClient } from 'pg';
import type { Message } from '../kafka/consumer';
import type { DeadMessage } from './dead-letter';
import type { WriteLock } from './write-lock';

/** The canary's messages claim a partition no topic has (partitions are int32 and counted from 0); its transaction is rolled back. */
export const CANARY_PARTITION = 0x7fffffff;

export interface RoleSettings {
  /** the role's name: metric labels, the readiness probes `<name>-consumer` and `<name>-pipeline` */
  name: string;
  /** what logs call one of its messages ('command', 'event') */
  noun: string;
  topic: string;
  group: string;
  dlqTopic: string;
  batchTimeMs: number;
  batchSize: number;
  maxInFlight: number;
  /** messages per consume call (default the consumer's) */
  consumeBatch?: number;
  /** careful redos of a batch before each further one counts as a failed attempt */
  maxRedos: number;
}

/** A batch as the core sees it. */
export interface Batch {
  readonly count: number;
  /** partition -> the offset after the batch's last message there */
  readonly next: ReadonlyMap<number, number>;
}

/** How a batch is to be prepared. */
export interface Preparation<L> {
  /** from Postgres, not from caches or the pending state of earlier batches */
  careful: boolean;
  /** what earlier careful redos of this batch read from Postgres */
  learned: L | undefined;
  /** partition -> the next offset committed in Postgres: a message below it is a replay */
  committedNext: ReadonlyMap<number, number>;
}

/** What a role's write came to inside the transaction (a failure is thrown, and classified by the core). */
export type WriteResult = 'written' | 'redo' | { gated: string; why: string };

/** A message a prepared batch dead-letters (it never reaches the store), and why. */
export interface DeadLetter { message: DeadMessage; code: string; reason: string }

export interface PipelineRole<Item, B extends Batch, P, L = never> {
  readonly settings: RoleSettings;
  readonly workers: { utilization(): number; queueSize(): number; close(): Promise<void> };
  /**
   * Shared with the other pipelines of this process that write the same rows (commands, transfers): a
   * batch's commit transaction holds it shared, and a careful redo exclusively from its preparation to its
   * commit, so what it read from Postgres cannot be overtaken by the other pipeline's commit in this
   * process (write-lock.ts). The canary's rolled-back transaction and a dead letter's offsets take none.
   */
  readonly writeLock?: WriteLock;

  /** What the batch sink holds for one consume call's messages. */
  itemsOf(msgs: Message[]): Item[];
  /** An item's weight against settings.batchSize (default 1). */
  weight?(item: Item): number;
  batchOf(items: Item[]): B;
  /** The batch in two halves, in offset order (to isolate a poison message). */
  halves(batch: B): [B, B];
  /** The batch's first message in offset order (of a lone poison message: that message). */
  first(batch: B): DeadMessage;
  /** A known-good batch on partition CANARY_PARTITION; its transaction is rolled back. */
  canary(): B;

  /** The offset to start a partition from, given what Postgres stores (default its next offset). */
  startFrom?(stored: { nextOffset: number; publishedOffset: number | null }): number;
  /** The partitions were assigned (committed offsets already read). */
  assigned?(partitions: number[]): void;

  prepare(batch: B, seq: number, how: Preparation<L>): Promise<P>;
  /** Seconds the preparation spent in the worker pool (the `worker` stage of banking_es_pipeline_stage_seconds). */
  workerSeconds(p: P): number;
  /** A preparation to redo carefully before anything of it is written, dead letters included (commands: it replays offsets, or has a dead letter decided on a cached state). */
  mustRedo?(p: P): boolean;
  deadLetters(p: P): DeadLetter[];
  /** Writes the preparation's rows inside the core's transaction (the offsets follow it). */
  write(client: PoolClient, p: P): Promise<WriteResult>;
  /** Reads, after a redo, what Postgres holds for the batch; passed to the next preparation. */
  learn?(p: P, before: L | undefined): Promise<L>;
  /** Batch `seq` committed as `p` prepared it: caches, metrics, outcomes. */
  committed(p: P, seq: number): void;
  /** A dead-lettered message was committed past, alone (offsets up to `next`). */
  committedPast?(seq: number, next: ReadonlyMap<number, number>): void;
  /** Batch `seq` and every later one will not commit as prepared; `discarded` is the failed preparation. */
  abandon(seq: number, discarded?: P): void;
  /**
   * Partitions to consume again from `offset` now (commands: outcomes Kafka never acknowledged, published
   * again by the replay); polled every second. The core holds consumption, lets what was consumed commit,
   * then seeks the consumer there (calling beginRewind before, or rewindFailed).
   */
  dueRewinds?(): Array<{ partition: number; offset: number }>;
  /**
   * Consumption is held and drained, and the consumer is sought next: to the offset this returns (not below
   * `logStart`, the partition's first offset Kafka still holds), or not at all when undefined.
   */
  beginRewind?(partition: number, logStart: number): number | undefined;
  /** The partition could not be rewound (not assigned, drain or seek failed): ask again after a backoff. */
  rewindFailed?(partition: number): void;
  /** The offset up to which outcomes reached Kafka, stored beside the committed offset (commands). */
  publishedOffset?(partition: number): number | null;
  /** Everything consumed has committed (at stop, and before partitions are revoked), up to `committed`: flush what the role still holds. */
  drained?(committed: ReadonlyMap<number, number>): Promise<void>;
}
