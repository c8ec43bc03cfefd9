-- Read models written by the projection pipeline (DESIGN §3).

CREATE TABLE IF NOT EXISTS account_projections (
  account_id uuid        NOT NULL PRIMARY KEY,
  owner_name text        NOT NULL,
  currency   text        NOT NULL,
  balance    bigint      NOT NULL,               -- minor units
  status     text        NOT NULL CHECK (status IN ('open', 'closed')),
  version    bigint      NOT NULL,
  opened_at  timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  closed_at  timestamptz
);

CREATE TABLE IF NOT EXISTS transaction_projections (
  account_id    uuid        NOT NULL,
  version       bigint      NOT NULL,
  event_id      uuid        NOT NULL,
  event_type    text        NOT NULL,
  amount        bigint      NOT NULL,            -- minor units, signed: withdrawals negative
  balance_after bigint      NOT NULL,
  currency      text        NOT NULL,
  command_id    uuid        NOT NULL,
  recorded_at   timestamptz NOT NULL,
  PRIMARY KEY (account_id, version)
);
