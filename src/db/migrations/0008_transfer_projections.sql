-- Transfers (envelope schema version 2): a transfer's movement on either account names
-- the transfer and the other account, so `account <id>` can list transfers in and out.
-- NULL on every other movement. Nullable columns without a default: no table rewrite.
ALTER TABLE transaction_projections
  ADD COLUMN IF NOT EXISTS transfer_id     uuid,
  ADD COLUMN IF NOT EXISTS counterparty_id uuid;
