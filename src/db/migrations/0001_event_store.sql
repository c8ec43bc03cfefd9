-- The event store and the command pipeline's bookkeeping (DESIGN §3).
-- Every table leads its key with account_id so Citus can distribute by it.

CREATE TABLE IF NOT EXISTS events (
  account_id  uuid        NOT NULL,
  version     bigint      NOT NULL CHECK (version >= 1),
  event_id    uuid        NOT NULL,
  event_type  text        NOT NULL,
  payload     jsonb       NOT NULL,            -- the §2.4 envelope, exactly as published
  command_id  uuid        NOT NULL,
  recorded_at timestamptz NOT NULL,
  -- for the gap-safe polling relay: the writing transaction and a position within it
  tx_id       xid8        NOT NULL DEFAULT pg_current_xact_id(),
  position    bigint      GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (account_id, version),
  UNIQUE (account_id, command_id)
);

CREATE TABLE IF NOT EXISTS command_rejections (
  account_id   uuid        NOT NULL,
  command_id   uuid        NOT NULL,
  command_type text        NOT NULL,
  reason       text        NOT NULL,
  detail       text,
  rejected_at  timestamptz NOT NULL,
  PRIMARY KEY (account_id, command_id)
);

-- next_offset: the first offset not yet applied; written in the same
-- transaction as the data it covers. published_offset: outcomes of every
-- offset below it were acknowledged by Kafka; between the two, outcomes are
-- re-published after a crash (at-least-once).
CREATE TABLE IF NOT EXISTS consumer_offsets (
  consumer         text        NOT NULL,
  topic            text        NOT NULL,
  partition        integer     NOT NULL,
  next_offset      bigint      NOT NULL,
  published_offset bigint,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, topic, partition)
);
