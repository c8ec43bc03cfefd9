-- The publication the Debezium connector reads (connectors/debezium-postgres.json,
-- publication.autocreate.mode=disabled, docs/cdc.md). It is created with the schema, so a
-- connector registered once the schema exists always finds it and its table: a connector
-- that autocreated it could start before `events` existed, fail, and stay failed. Inserts
-- only, as the event store is append-only. A publication retains nothing (a slot does), so
-- it costs nothing where Debezium is not used.
--
-- CREATE PUBLICATION needs CREATE on the database as well as owning `events`; a migrating
-- role without it gets a warning instead of a failed migration, and the connector's own
-- role (or an administrator) creates it as docs/cdc.md shows.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'banking_es_debezium') THEN
    CREATE PUBLICATION banking_es_debezium FOR TABLE events WITH (publish = 'insert');
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'publication banking_es_debezium not created (%): create it as docs/cdc.md shows before registering the Debezium connector', SQLERRM;
END $$;
