import type { Pool, PoolClient } from 'pg';
import { outcomeKey, type KnownOutcome, type SourcePlace } from '../../pipeline/commands/decide-shard';
import { fractionDigits } from '../../domain/currency';
import { formatMoney, parseMinor } from '../../domain/money';

interface SourceRow { source_partition: number | null; source_offset: string | null }

/** Where the original command was read (migration 0005), when the row records it. */
function sourceOf(r: SourceRow): SourcePlace {
  return r.source_partition === null || r.source_offset === null ? {} : { sourcePartition: r.source_partition, sourceOffset: Number(r.source_offset) };
}

/**
 * Outcomes Postgres already holds for these (account, command) pairs: the
 * authority for idempotency (docs/architecture.md §4). The ids are validated UUIDs, passed
 * as arrays that node-postgres encodes: no array literal is ever assembled.
 */
export async function findKnownOutcomes(client: Pool | PoolClient, accounts: readonly string[], commands: readonly string[]): Promise<Map<string, KnownOutcome>> {
  const known = new Map<string, KnownOutcome>();
  const ev = await client.query<{ account_id: string; command_id: string; event_type: string; version: string; balance_after: string; currency: string; to_account_id: string | null; amount: string | null } & SourceRow>(
    `SELECT e.account_id, e.command_id, e.event_type, e.version, e.payload->'data'->>'balanceAfter' AS balance_after, e.payload->'data'->>'currency' AS currency,
            e.payload->'data'->>'toAccountId' AS to_account_id, e.payload->'data'->>'amount' AS amount, e.source_partition, e.source_offset
       FROM unnest($1::uuid[], $2::uuid[]) AS c(a, k)
       JOIN events e ON e.account_id = c.a AND e.command_id = c.k`,
    [accounts, commands],
  );
  for (const r of ev.rows) {
    const minor = parseMinor(r.balance_after) ?? 0;
    const outcome: KnownOutcome = { status: 'accepted', type: COMMAND_OF[r.event_type] ?? r.event_type, version: Number(r.version), balance: formatMoney(minor, fractionDigits(r.currency) ?? 2), ...sourceOf(r) };
    // a debited transfer: what its credit step needs to go again (docs/transfers.md)
    if (r.event_type === 'TransferDebited' && r.to_account_id !== null && r.amount !== null) outcome.transfer = { toAccountId: r.to_account_id, amount: r.amount, currency: r.currency };
    known.set(outcomeKey(r.account_id, r.command_id), outcome);
  }
  const rej = await client.query<{ account_id: string; command_id: string; command_type: string; reason: string; detail: string | null; to_account_id: string | null } & SourceRow>(
    `SELECT r.account_id, r.command_id, r.command_type, r.reason, r.detail, r.to_account_id, r.source_partition, r.source_offset
       FROM unnest($1::uuid[], $2::uuid[]) AS c(a, k)
       JOIN command_rejections r ON r.account_id = c.a AND r.command_id = c.k`,
    [accounts, commands],
  );
  for (const r of rej.rows) {
    known.set(outcomeKey(r.account_id, r.command_id), {
      status: 'rejected', type: r.command_type, reason: r.reason, ...(r.detail === null ? {} : { detail: r.detail }),
      ...(r.to_account_id === null ? {} : { toAccountId: r.to_account_id }), ...sourceOf(r),
    });
  }
  return known;
}

type DecidedPairs = { accounts: readonly string[]; commands: readonly string[] };
/** Accounts a batch refused a command on because of their state, with the version the refusal saw. */
export type RefusedOnState = { accounts: readonly string[]; versions: readonly number[] };
/**
 * States read from Redis that a batch decided on: each account's version, and
 * what its event at that version must carry: the balance (minor units, as
 * balanceAfter is stored), the currency, and whether it closed the account.
 */
export type RedisStates = {
  accounts: readonly string[]; versions: readonly number[]; balances: readonly string[]; currencies: readonly string[]; closed: readonly boolean[];
};
/**
 * Accounts a deposit or credit raised, decided without the money their
 * outgoing transfers in flight hold: each with the highest its balance
 * reached at one of them, plus what the batch itself had put in flight by
 * then (debits) or brought back (refunds), minor units as text
 * (ShardResult.raisedPeaks).
 */
export type RaisedPeaks = { accounts: readonly string[]; peaks: readonly string[] };
/** What the commit's check found: any makes the batch decided again. */
export interface CommitCheck {
  /** a command decided the other way before, or a refusal decided on a state another writer moved past */
  decidedOtherwise: boolean;
  /** accounts whose state from Redis Postgres does not hold */
  unknownStates: string[];
  /** a raised account whose transfers in flight could no longer be refunded onto it (above 2^53 − 1 minor units) */
  overLimit: boolean;
}

/**
 * The commit's one check, in the batch's transaction:
 * - `decidedOtherwise`: a command decided now was decided the other way before (an
 *   accepted pair already has a rejection row, or a rejected pair an event
 *   row; the unique keys catch a pair decided the same way), or a refusal
 *   was decided on a state another writer has moved past (an event beyond
 *   the version it saw);
 * - `unknownStates`: the accounts whose state from Redis is not one Postgres holds
 *   (no event at its version with its balance, currency and status). The
 *   events key catches a cached state older than Postgres; this catches one
 *   that is newer or another ledger's (a Redis shared by two deployments, or
 *   one that outlived a restore of Postgres), which would otherwise leave a
 *   gap in the versions, or decide on a balance, currency or status the
 *   account never had.
 * - `overLimit`: a raised account's peak plus the money its transfers
 *   recorded in flight before this batch passes 2^53 − 1 minor units: a
 *   deposit or credit left no room for their refunds (docs/transfers.md).
 *   Decided again carefully, on that money read from `transfers`, it is
 *   refused LIMIT_EXCEEDED (or accepted, if a credit elsewhere settled one
 *   of the transfers meanwhile). A careful batch is not checked for this:
 *   its decider counted the money itself, and only a debit of that account
 *   could add to it since, which meets the events key.
 * One round trip for all; none when there is nothing to check. Every part
 * reads an index: the (account_id, command_id) key per pair, the primary key
 * per account, the in-flight index of `transfers` per raised account. The
 * LIMITs keep the planner from answering with a hash join over the whole
 * events table, which it chose with statistics older than the table's
 * growth (17 ms per batch at 96k events, growing with the table;
 * test/db/hot-path-plans.int.test.ts).
 */
export async function checkCommit(client: PoolClient, accepted: DecidedPairs, rejected: DecidedPairs, refused: RefusedOnState = NONE_REFUSED, fromRedis: RedisStates = NONE_FROM_REDIS, raised: RaisedPeaks = NONE_RAISED): Promise<CommitCheck> {
  if (accepted.accounts.length === 0 && rejected.accounts.length === 0 && refused.accounts.length === 0 && fromRedis.accounts.length === 0 && raised.accounts.length === 0) {
    return { decidedOtherwise: false, unknownStates: [], overLimit: false };
  }
  const { rows } = await client.query<{ decided_otherwise: boolean; unknown_states: string[] | null; over_limit: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM unnest($1::uuid[], $2::uuid[]) AS c(a, k) JOIN command_rejections t ON t.account_id = c.a AND t.command_id = c.k)
         OR EXISTS (SELECT 1 FROM unnest($3::uuid[], $4::uuid[]) AS c(a, k) JOIN events t ON t.account_id = c.a AND t.command_id = c.k)
         OR EXISTS (SELECT 1 FROM unnest($5::uuid[], $6::bigint[]) AS c(a, v)
                     CROSS JOIN LATERAL (SELECT 1 FROM events t WHERE t.account_id = c.a AND t.version > c.v LIMIT 1) AS moved) AS decided_otherwise,
            (SELECT array_agg(c.a) FROM unnest($7::uuid[], $8::bigint[], $9::text[], $10::text[], $11::boolean[]) AS c(a, v, b, cur, closed)
               LEFT JOIN LATERAL (SELECT t.payload->'data'->>'balanceAfter' AS b, t.payload->'data'->>'currency' AS cur, t.event_type = 'AccountClosed' AS closed
                                    FROM events t WHERE t.account_id = c.a AND t.version = c.v LIMIT 1) AS held ON true
              WHERE (held.b, held.cur, held.closed) IS DISTINCT FROM (c.b, c.cur, c.closed)) AS unknown_states,
            EXISTS (SELECT 1 FROM unnest($12::uuid[], $13::numeric[]) AS c(a, peak)
                     WHERE c.peak + (SELECT coalesce(sum(t.amount), 0) FROM transfers t WHERE t.source_id = c.a AND t.settled IS NULL) > 9007199254740991) AS over_limit`,
    [accepted.accounts, accepted.commands, rejected.accounts, rejected.commands, refused.accounts, refused.versions,
      fromRedis.accounts, fromRedis.versions, fromRedis.balances, fromRedis.currencies, fromRedis.closed, raised.accounts, raised.peaks],
  );
  return { decidedOtherwise: rows[0].decided_otherwise, unknownStates: rows[0].unknown_states ?? [], overLimit: rows[0].over_limit };
}

const NONE_RAISED: RaisedPeaks = { accounts: [], peaks: [] };
const NONE_REFUSED: RefusedOnState = { accounts: [], versions: [] };
const NONE_FROM_REDIS: RedisStates = { accounts: [], versions: [], balances: [], currencies: [], closed: [] };

const COMMAND_OF: Record<string, string> = {
  AccountCreated: 'OpenAccount', MoneyDeposited: 'Deposit', MoneyWithdrawn: 'Withdraw', AccountClosed: 'CloseAccount',
  TransferDebited: 'Transfer', TransferCredited: 'CreditTransfer', TransferRefunded: 'RefundTransfer',
};
