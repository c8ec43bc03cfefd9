/**
 * pg-logical-replication's pgoutput decoder, keeping every column as the text
 * Postgres sent. The stock decoder runs each value through node-postgres'
 * type parsers, which would turn `payload` (jsonb) into an object that we
 * would then have to re-serialize: the relay must publish the envelope
 * exactly as stored (jsonb's own text form), and skipping the parse is also
 * cheaper. The decoder caches the Relation message it returns and reads later
 * Inserts through it, so swapping the column parsers here takes effect for
 * every row of that relation.
 */
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';

const keepText = (raw: unknown): unknown => raw;

export class RawPgoutputPlugin extends PgoutputPlugin {
  override parse(buffer: Buffer): Pgoutput.Message {
    const msg = super.parse(buffer);
    if (msg.tag === 'relation') for (const c of msg.columns) c.parser = keepText;
    return msg;
  }
}
