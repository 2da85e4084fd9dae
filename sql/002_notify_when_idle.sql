-- s3o-notify migration 002: wake the dispatcher only while it is idle.
--
-- Apply after 001, in the producer's database:
--
--     psql -v ON_ERROR_STOP=1 -d APPDB -f sql/002_notify_when_idle.sql
--
-- One transaction, idempotent, no superuser, no new grants: producers keep
-- only INSERT and EXECUTE; the dispatcher role needs, in addition to 001's:
--
--     GRANT SELECT, UPDATE ON notification_dispatcher_state TO s3o_notify;
--
-- Why: PostgreSQL serialises every committing transaction that has called
-- pg_notify() on one lock, so a NOTIFY in each producer transaction caps
-- the producers' commit rate. A dispatcher that is draining the outbox
-- claims again as soon as a claim returns rows: it needs no wake-up. While
-- it says so here (busy_until in the future), the trigger skips pg_notify().
-- The dispatcher clears the mark when a claim finds nothing and then claims
-- once more, so only a transaction that read the mark before it was cleared
-- and committed after that last claim goes unannounced: the sweep
-- (sweep_interval) delivers it. A dispatcher that dies while busy stops
-- renewing the mark, which lapses within a second.

BEGIN;
SET LOCAL client_min_messages = warning;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM notification_schema_version WHERE version = 1) THEN
		RAISE EXCEPTION 'apply sql/001_outbox.sql before sql/002_notify_when_idle.sql';
	END IF;
END
$$;

CREATE TABLE IF NOT EXISTS notification_dispatcher_state (
	id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
	busy_until timestamptz
);
INSERT INTO notification_dispatcher_state (id) VALUES (1) ON CONFLICT DO NOTHING;

-- SECURITY DEFINER: producers need no privilege on the state table.
CREATE OR REPLACE FUNCTION notification_outbox_notify() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM notification_dispatcher_state
		       WHERE busy_until > clock_timestamp()) THEN
		PERFORM pg_notify('notification_outbox', '');
	END IF;
	RETURN NULL;
END
$$;

INSERT INTO notification_schema_version (version) VALUES (2) ON CONFLICT DO NOTHING;

COMMIT;
