-- A rebuild may cover some accounts only (`rebuild-projections --account … | --since …`,
-- the seed system's "selective" and "incremental" replay). `scope` holds them, sorted;
-- NULL is the whole event store. A resumed rebuild keeps its scope, so an
-- interrupted selective rebuild never turns into a full one or the reverse.
ALTER TABLE projection_rebuilds ADD COLUMN IF NOT EXISTS scope uuid[];
