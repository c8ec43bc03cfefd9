/**
 * The column lists of the binary COPY rows the workers encode and the main
 * thread copies into Postgres: one definition for both sides (a row's field
 * count is its list's length). Pure: workers and the SQL layer import it.
 */

/** `events`, as the command worker encodes them. */
export const EVENT_COLUMNS = 'account_id, version, event_id, event_type, payload, command_id, recorded_at, source_partition, source_offset';
/** `command_rejections`, as the command worker encodes them. */
export const REJECTION_COLUMNS = 'account_id, command_id, command_type, reason, detail, rejected_at, source_partition, source_offset, to_account_id';
/** `transfers` (a transfer's debit; its settlement updates the row), as the command worker encodes them. */
export const TRANSFER_COLUMNS = 'source_id, transfer_id, destination_id, amount, currency, debited_version, debited_at';
/** `transaction_projections`, as the projection worker encodes them. */
export const TRANSACTION_COLUMNS = 'account_id, version, event_id, event_type, amount, balance_after, currency, command_id, recorded_at, transfer_id, counterparty_id';
/** The staging table of the `account_projections` upsert, as the projection worker encodes it. */
export const ACCOUNT_STAGING_COLUMNS = 'account_id, owner_name, currency, balance, status, version, opened_at, updated_at, closed_at';

/** How many fields a row of `columns` has. */
export const fieldCount = (columns: string): number => columns.split(',').length;
