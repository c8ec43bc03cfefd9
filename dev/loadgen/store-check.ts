/**
 * What the event store holds after a driven workload, checked against the
 * generator's model (dev/loadgen/generator.ts): every account's balance, and
 * with transfers, every transfer settled as the model says (credited or
 * refunded, none in flight) and each currency conserved. Used by the demo and
 * by the bench, so a fast wrong answer fails both the same way.
 */
import type { Client, Pool } from 'pg';
import type { Workload } from './generator';

export interface StoreCheck {
  /** balance per account, minor units, as its latest event says */
  balances: Map<string, number>;
  /** accounts whose balance differs from the model */
  wrongBalances: number;
  /** what the transfers table holds for the workload's sources */
  transfers: { credited: number; refunded: number; open: number };
  /** transfer checks that failed: counts unlike the model, transfers in flight, currencies not conserved */
  transfersWrong: number;
  /** per currency, "USD conserved" or what differs */
  conservation: string[];
}

export async function checkStore(db: Pool | Client, w: Workload): Promise<StoreCheck> {
  const { rows } = await db.query<{ account_id: string; balance: string }>(
    `SELECT DISTINCT ON (account_id) account_id, payload->'data'->>'balanceAfter' AS balance FROM events WHERE account_id = ANY($1::uuid[]) ORDER BY account_id, version DESC`, [w.accountIds]);
  const balances = new Map(rows.map((x) => [x.account_id, Number(x.balance)]));
  const wrongBalances = w.accountIds.filter((id) => balances.get(id) !== w.expected.get(id)).length;
  const { rows: [t] } = await db.query<{ credited: number; refunded: number; open: number }>(
    `SELECT count(*) FILTER (WHERE settled = 'credited')::int AS credited, count(*) FILTER (WHERE settled = 'refunded')::int AS refunded,
            count(*) FILTER (WHERE settled IS NULL)::int AS open FROM transfers WHERE source_id = ANY($1::uuid[])`, [w.accountIds]);
  let transfersWrong = Number(t.credited !== w.transfers.credited) + Number(t.refunded !== w.transfers.refunded) + t.open;
  const conservation = ['USD', 'EUR'].map((c) => {
    const ids = w.accountIds.filter((id) => w.currencyOf.get(id) === c);
    const store = ids.reduce((sum, id) => sum + (balances.get(id) ?? 0), 0), model = ids.reduce((sum, id) => sum + w.expected.get(id)!, 0);
    if (store !== model) transfersWrong++;
    return `${c} ${store === model ? 'conserved' : `DIFFERS: store ${store}, model ${model}`}`;
  });
  return { balances, wrongBalances, transfers: t, transfersWrong, conservation };
}
