/**
 * connectors/debezium-postgres.json maps the events table onto the event
 * topic the way the daemon expects (docs/architecture.md §2.4): the columns it names exist
 * in the migrations, the topic is the configured default, the value is the
 * expanded payload, the key is the bare account id, and its slot and
 * publication do not collide with the built-in relay's.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { packageRoot } from '../../src/paths';
import { configSchema } from '../../src/config';
import { readMigrations } from '../../src/db/migrate';
import { RELAY_PUBLICATION, RELAY_SLOT } from '../../src/db/sql/replication-slot';

const file = path.join(packageRoot(), 'connectors', 'debezium-postgres.json');
/** The config object alone: what `PUT /connectors/<name>/config` takes, creating or updating the connector. */
const c = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, string>;

/** Column name → type of `events`, from its CREATE TABLE in the migrations. */
function eventsColumns(): Map<string, string> {
  const sql = readMigrations().map((m) => m.sql).join('\n');
  const m = /CREATE TABLE IF NOT EXISTS events \(([\s\S]*?)\n\);/.exec(sql);
  assert.ok(m, 'events table found in the migrations');
  const cols = new Map<string, string>();
  for (const line of m![1].split('\n')) {
    const t = /^\s*([a-z_]+)\s+([a-z0-9]+)/.exec(line.replace(/--.*$/, ''));
    if (t && !['primary', 'unique'].includes(t[1].toLowerCase())) cols.set(t[1], t[2]);
  }
  return cols;
}

test('a Kafka Connect config object for the Debezium Postgres connector over pgoutput', () => {
  assert.not.ok('config' in c || 'name' in c, 'the config object alone, not {name, config}');
  assert.is(c['connector.class'], 'io.debezium.connector.postgresql.PostgresConnector');
  assert.is(c['plugin.name'], 'pgoutput');
  assert.is(c['table.include.list'], 'public.events');
  for (const v of Object.values(c)) assert.type(v, 'string', 'Connect config values are strings');
});

test('its slot and publication are not the built-in relay’s', () => {
  assert.ok(c['slot.name'] && c['slot.name'] !== RELAY_SLOT);
  assert.ok(c['publication.name'] && c['publication.name'] !== RELAY_PUBLICATION);
});

test('the publication is the migrations\' (never autocreated), and the snapshot reads each account in version order', () => {
  assert.is(c['publication.autocreate.mode'], 'disabled');
  const sql = readMigrations().map((m) => m.sql).join('\n');
  assert.ok(sql.includes(`CREATE PUBLICATION ${c['publication.name']} FOR TABLE events`), 'a migration creates the connector\'s publication');
  assert.is(c['snapshot.select.statement.overrides'], 'public.events');
  assert.match(c['snapshot.select.statement.overrides.public.events'], /FROM public\.events ORDER BY account_id, version$/);
});

test('it logs in as docker-compose\'s Postgres user and registers by an idempotent PUT once the publication exists', () => {
  const compose = parse(fs.readFileSync(path.join(packageRoot(), 'docker-compose.yml'), 'utf8')) as { services: Record<string, { environment?: Record<string, string>; command?: string[]; depends_on?: Record<string, { condition: string }> }> };
  const pg = compose.services.postgres.environment!;
  assert.is(c['database.user'], pg.POSTGRES_USER);
  assert.is(c['database.password'], pg.POSTGRES_PASSWORD);
  assert.is(c['database.dbname'], pg.POSTGRES_DB);
  assert.match(compose.services['banking-es'].environment!.DATABASE_URL, new RegExp(`^postgres://${pg.POSTGRES_USER}:${pg.POSTGRES_PASSWORD}@postgres:5432/${pg.POSTGRES_DB}$`));
  const init = compose.services['connect-init'];
  const cmd = init.command!.join(' ');
  assert.match(cmd, /-X PUT .*--data @\/connector\.json http:\/\/connect:8083\/connectors\/banking-es-events\/config/);
  assert.not.match(cmd, /POST|readyz/, 'no POST fallback, no wait on /readyz');
  assert.is(init.depends_on!['schema-wait'].condition, 'service_completed_successfully');
  const wait = compose.services['schema-wait'].command!.join(' ');
  assert.ok(wait.includes(`pubname = '${c['publication.name']}'`) && wait.includes(`${pg.POSTGRES_USER}:${pg.POSTGRES_PASSWORD}@postgres:5432/${pg.POSTGRES_DB}`), wait);
});

test('the outbox event router reads columns that exist in the events table', () => {
  const cols = eventsColumns();
  assert.is(c['transforms'].split(',')[0], 'outbox');
  assert.is(c['transforms.outbox.type'], 'io.debezium.transforms.outbox.EventRouter');
  assert.is(c['transforms.outbox.table.field.event.id'], 'event_id');
  assert.is(c['transforms.outbox.table.field.event.key'], 'account_id');
  assert.is(c['transforms.outbox.table.field.event.payload'], 'payload');
  for (const k of ['table.field.event.id', 'table.field.event.key', 'table.field.event.payload', 'route.by.field']) {
    const col = c[`transforms.outbox.${k}`];
    assert.ok(cols.has(col), `${k} = ${col} is a column of events (${[...cols.keys()].join(', ')})`);
  }
  for (const p of c['transforms.outbox.table.fields.additional.placement'].split(',')) {
    assert.ok(cols.has(p.split(':')[0]), `additional placement ${p} names a column`);
  }
  assert.is(cols.get('payload'), 'jsonb', 'payload is jsonb, so it can be expanded as JSON');
  assert.is(cols.get('account_id'), 'uuid');
});

test('value = the payload expanded as JSON (the §2.4 envelope), key = the bare account id, topic = the configured default', () => {
  assert.is(c['transforms.outbox.table.expand.json.payload'], 'true');
  assert.is(c['value.converter'], 'org.apache.kafka.connect.json.JsonConverter');
  assert.is(c['value.converter.schemas.enable'], 'false');
  // the built-in relays key by the account id's text; a JSON key converter would add quotes
  assert.is(c['key.converter'], 'org.apache.kafka.connect.storage.StringConverter');
  const topic = configSchema.kafka.topics.events.default;
  assert.is(topic, 'bank.events');
  const replacement = c['transforms.outbox.route.topic.replacement'];
  assert.is(replacement, topic, 'every event type routes to the one event topic');
  assert.not.match(replacement, /\$\{routedByValue\}/);
});

test.run();
