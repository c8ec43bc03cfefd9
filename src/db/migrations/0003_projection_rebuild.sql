-- Checkpoints of `banking-es rebuild-projections` (src/projections/rebuild.ts).
-- A row is 'running' from the moment the read models are emptied until the
-- last page is projected; a crash leaves it 'running', the next run resumes
-- after (last_account_id, last_version), and the projection pipeline holds
-- its writes while any row is 'running' (a half-rebuilt read model is not
-- something to build on). At most one row is 'running'.

CREATE TABLE IF NOT EXISTS projection_rebuilds (
  id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  state           text        NOT NULL CHECK (state IN ('running', 'done')),
  started_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz,
  last_account_id uuid,                      -- keyset position: every event up to here is projected
  last_version    bigint,
  events_done     bigint      NOT NULL DEFAULT 0,
  events_total    bigint      NOT NULL DEFAULT 0,
  runs            integer     NOT NULL DEFAULT 1  -- 1 + resumes
);

CREATE UNIQUE INDEX IF NOT EXISTS projection_rebuilds_one_running ON projection_rebuilds ((true)) WHERE state = 'running';
