-- The polling relay's checkpoint (DESIGN §3): the (tx_id, position) of the
-- last event Kafka acknowledged, per relay name. Kept in Postgres, beside the
-- data it points into, so a restart resumes exactly there.
--
-- The index the poller reads through, events (tx_id, position), is NOT
-- created here: it costs every insert on the hot path, and only cdc.mode =
-- poller needs it. The poller creates it at start with
-- CREATE INDEX CONCURRENTLY IF NOT EXISTS events_tx_position.
CREATE TABLE IF NOT EXISTS relay_checkpoints (
  relay      text        NOT NULL,
  tx_id      xid8        NOT NULL,
  position   bigint      NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (relay)
);
