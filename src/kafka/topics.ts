/**
 * The topics a role reads and writes are provisioned or reported, never
 * silently missing (docs/architecture.md §4). A consumer that subscribes to a
 * topic that does not exist yet gets nothing, and librdkafka looks again only
 * every topic.metadata.refresh.interval.ms; a daemon that looks healthy
 * while it does nothing is the worst kind of outage. So, at a role's start:
 *
 * 1. the cluster's topic list is read (a metadata request for all topics,
 *    which creates nothing);
 * 2. missing topics are created when `kafka.createTopics` is on: with the
 *    AdminClient (CreateTopics) where the cluster supports it, else by a
 *    metadata request for the topic, which a cluster with
 *    auto.create.topics.enable creates (librdkafka's mock cluster does this
 *    and does not answer CreateTopics);
 * 3. whatever is still missing is reported: the `topics` readiness check
 *    fails naming it, `banking_es_topic_missing{topic}` is 1, and a watcher
 *    looks again every `kafka.metadataRefreshMs` until it appears. The role
 *    runs meanwhile: its consumer is subscribed, and picks the topic up at
 *    the next metadata refresh (seconds, not librdkafka's 5 minutes).
 */
import Kafka from 'node-rdkafka';
import type { Config } from '../config';
import type { Health } from '../health';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import { coerceError } from '../errors';
import { baseKafkaConfig } from './client-config';
import { closeWithin } from './native-close';

const TOPIC_ALREADY_EXISTS = 36;

export interface TopicSpec { partitions: number; replicationFactor: number }

/** Partitions and replication factor for a topic banking-es creates: the defaults, or its override. */
export function topicSpec(config: Config, topic: string): TopicSpec {
  const t = config.kafka.newTopics;
  const spec: TopicSpec = { partitions: t.partitions, replicationFactor: t.replicationFactor };
  for (const entry of t.overrides.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name, value] = entry.split('=');
    if (name !== topic) continue;
    const [p, r] = value.split('/');
    spec.partitions = Number(p);
    if (r !== undefined) spec.replicationFactor = Number(r);
  }
  return spec;
}

/** What a metadata request of the whole cluster says: topic name -> partition count. */
type TopicList = Map<string, number>;

export class Topics {
  private readonly missing = new Set<string>();
  private readonly wanted = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;

  /**
   * @param metadataClient any connected node-rdkafka client (the daemon's producer): metadata requests go through it
   */
  constructor(
    private readonly config: Config,
    private readonly metadataClient: Kafka.Producer,
    private readonly ctx: { health: Health; metrics: Metrics; log: Logger },
  ) {
    ctx.health.add('topics', async () => {
      if (this.missing.size === 0) return `${this.wanted.size} topics present`;
      const how = config.kafka.createTopics ? 'they could not be created; create them' : 'create them, or set KAFKA_CREATE_TOPICS=true';
      throw new Error(`missing topics: ${[...this.missing].join(', ')} (${how}); the roles start using them as soon as they appear`);
    });
  }

  /** Makes sure `topics` exist (see the file comment); resolves when they do or once they are reported missing. Never rejects. */
  async ensure(role: string, topics: string[]): Promise<void> {
    const fresh = topics.filter((t) => !this.wanted.has(t));
    for (const t of fresh) this.wanted.add(t);
    if (fresh.length === 0) return;
    let list: TopicList;
    try {
      list = await this.list();
    } catch (e) {
      // the cluster does not answer yet: report the topics missing and let the watcher find them
      this.ctx.log.warn({ err: coerceError(e), role }, 'could not list topics; checking again in the background');
      this.report(fresh);
      return;
    }
    let absent = fresh.filter((t) => !list.has(t));
    if (absent.length && this.config.kafka.createTopics) {
      await this.create(role, absent);
      list = await this.list().catch(() => list);
      absent = absent.filter((t) => !list.has(t));
    }
    for (const t of fresh.filter((x) => !absent.includes(x))) this.ctx.metrics.topicMissing.set({ topic: t }, 0);
    if (absent.length) this.report(absent);
  }

  /** Stops the watcher. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private report(absent: string[]): void {
    for (const t of absent) {
      this.missing.add(t);
      this.ctx.metrics.topicMissing.set({ topic: t }, 1);
    }
    this.ctx.log.error({ topics: absent, createTopics: this.config.kafka.createTopics },
      'topics missing: not ready until they exist; the roles use them as soon as they appear');
    this.timer ??= setInterval(() => { this.checking ??= this.recheck().finally(() => { this.checking = undefined; }); }, this.config.kafka.metadataRefreshMs);
    this.timer.unref();
  }

  private async recheck(): Promise<void> {
    const list = await this.list().catch(() => undefined);
    if (!list) return;
    for (const t of [...this.missing]) {
      if (!list.has(t)) continue;
      this.missing.delete(t);
      this.ctx.metrics.topicMissing.set({ topic: t }, 0);
      this.ctx.log.info({ topic: t, partitions: list.get(t) }, 'topic appeared');
    }
    if (this.missing.size === 0) this.close();
  }

  private list(timeoutMs = 5000): Promise<TopicList> {
    return new Promise((resolve, reject) => {
      this.metadataClient.getMetadata({ allTopics: true, timeout: timeoutMs }, (err, md) => {
        if (err) return reject(coerceError(err));
        resolve(new Map(md.topics.filter((t) => t.partitions.length > 0).map((t) => [t.name, t.partitions.length])));
      });
    });
  }

  /** CreateTopics where the cluster answers it; else a metadata request for each topic (auto-creation). */
  private async create(role: string, topics: string[]): Promise<void> {
    const { log } = this.ctx;
    const admin = Kafka.AdminClient.create({ ...baseKafkaConfig(this.config, `${role}-admin`) } as Kafka.GlobalConfig);
    try {
      await Promise.all(topics.map((topic) => new Promise<void>((resolve) => {
        const spec = topicSpec(this.config, topic);
        admin.createTopic({ topic, num_partitions: spec.partitions, replication_factor: spec.replicationFactor }, this.config.kafka.adminTimeoutMs, (err) => {
          if (!err || err.code === TOPIC_ALREADY_EXISTS) {
            if (!err) log.info({ topic, ...spec }, 'topic created');
            return resolve();
          }
          log.warn({ topic, err: coerceError(err) }, 'CreateTopics failed; asking for the topic so a cluster that auto-creates topics creates it');
          this.metadataClient.getMetadata({ topic, timeout: this.config.kafka.adminTimeoutMs }, () => resolve());
        });
      })));
    } finally {
      await closeWithin(`kafka-admin-${role}`, 2000, (done) => { admin.disconnect(); done(); });
    }
    // auto-created topics take a moment to show in the cluster's metadata
    for (let i = 0; i < 20; i++) {
      const list = await this.list().catch(() => undefined);
      if (list && topics.every((t) => list.has(t))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
