-- The transfer process's record (docs/transfers.md): one row per transfer debited, inserted in
-- the debit's transaction, settled in the credit's or the refund's. Outgoing transfers in flight
-- (settled IS NULL) keep their source from closing (TRANSFERS_PENDING) and are the money in
-- flight of the conservation check; their age is a metric and an alert.
CREATE TABLE IF NOT EXISTS transfers (
  source_id       uuid        NOT NULL,
  transfer_id     uuid        NOT NULL,                      -- the source's commandId: unique per source only
  destination_id  uuid        NOT NULL,
  amount          bigint      NOT NULL CHECK (amount > 0),   -- minor units of currency
  currency        text        NOT NULL,
  debited_version bigint      NOT NULL,                      -- the source's TransferDebited
  debited_at      timestamptz NOT NULL,
  settled         text        CHECK (settled IN ('credited', 'refunded')),
  reason          text,                                      -- the destination's, when refunded
  settled_at      timestamptz,
  PRIMARY KEY (source_id, transfer_id),
  CHECK (source_id <> destination_id),
  CHECK ((settled IS NULL) = (settled_at IS NULL))
);

CREATE INDEX IF NOT EXISTS transfers_in_flight_by_source ON transfers (source_id) WHERE settled IS NULL;
CREATE INDEX IF NOT EXISTS transfers_in_flight_by_age ON transfers (debited_at) WHERE settled IS NULL;
