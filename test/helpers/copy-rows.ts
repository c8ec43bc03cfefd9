/**
 * Decodes binary COPY rows (no header/trailer) back into text values, for
 * tests of the encoders: uuid, int8, text, timestamptz (as ISO), null.
 */
export type ColumnType = 'uuid' | 'int8' | 'text' | 'timestamptz';

const PG_EPOCH_MS = 946684800000;

export function decodeCopyRows(bytes: Uint8Array, columns: Array<[string, ColumnType]>): Array<Record<string, string | null>> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const rows: Array<Record<string, string | null>> = [];
  let p = 0;
  while (p < buf.length) {
    const n = buf.readInt16BE(p);
    p += 2;
    if (n !== columns.length) throw new Error(`row with ${n} fields, expected ${columns.length}`);
    const row: Record<string, string | null> = {};
    for (const [name, type] of columns) {
      const len = buf.readInt32BE(p);
      p += 4;
      if (len < 0) { row[name] = null; continue; }
      const v = buf.subarray(p, p + len);
      p += len;
      switch (type) {
        case 'uuid': { const h = v.toString('hex'); row[name] = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`; break; }
        case 'int8': row[name] = v.readBigInt64BE(0).toString(); break;
        case 'text': row[name] = v.toString('utf8'); break;
        case 'timestamptz': row[name] = new Date(Number(v.readBigInt64BE(0) / 1000n) + PG_EPOCH_MS).toISOString(); break;
      }
    }
    rows.push(row);
  }
  return rows;
}

export const TRANSACTION_ROW: Array<[string, ColumnType]> = [
  ['account_id', 'uuid'], ['version', 'int8'], ['event_id', 'uuid'], ['event_type', 'text'], ['amount', 'int8'],
  ['balance_after', 'int8'], ['currency', 'text'], ['command_id', 'uuid'], ['recorded_at', 'timestamptz'],
  ['transfer_id', 'uuid'], ['counterparty_id', 'uuid'],
];
export const ACCOUNT_ROW: Array<[string, ColumnType]> = [
  ['account_id', 'uuid'], ['owner_name', 'text'], ['currency', 'text'], ['balance', 'int8'], ['status', 'text'],
  ['version', 'int8'], ['opened_at', 'timestamptz'], ['updated_at', 'timestamptz'], ['closed_at', 'timestamptz'],
];
