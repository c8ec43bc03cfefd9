-- A Transfer refused at its source keeps its destination, so a re-send is answered with
-- exactly the first outcome (which names toAccountId), whatever the re-send names.
-- NULL on every other rejection. Nullable without a default: no table rewrite.
ALTER TABLE command_rejections ADD COLUMN IF NOT EXISTS to_account_id uuid;
