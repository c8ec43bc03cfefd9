-- Where each decided command was read (docs/architecture.md §2.2, §4): its partition and
-- offset in the command topic. After a crash or a hand-over the new owner
-- re-publishes the outcomes of the offsets whose publication was not
-- recorded; a message there may be the original command or a re-send of it.
-- Only the original's offset is stored with its event or rejection, so the
-- replay answers the original with its own status and a re-send with
-- `duplicate`, exactly as they were first answered.
--
-- Nullable and without a default: adding them rewrites nothing, and rows
-- written before this migration keep NULL (their replays answer as before).
ALTER TABLE events
  ADD COLUMN IF NOT EXISTS source_partition integer,
  ADD COLUMN IF NOT EXISTS source_offset    bigint;

ALTER TABLE command_rejections
  ADD COLUMN IF NOT EXISTS source_partition integer,
  ADD COLUMN IF NOT EXISTS source_offset    bigint;
