-- s3o-notify migration 004: the busy mark of 002 as an advisory lock.
--
-- Apply after 003, in the producer's database:
--
--     psql -v ON_ERROR_STOP=1 -d APPDB -f sql/004_busy_lock.sql
--
-- One transaction, idempotent, no superuser. Grants: none new; the
-- dispatcher no longer needs SELECT, UPDATE on notification_dispatcher_state,
-- which this drops.
--
-- Why: 002's trigger read a table through a SECURITY DEFINER function, and
-- that call cost producers about a fifth of their commit rate (pgbench, 16
-- clients, no dispatcher running). Now a draining dispatcher holds an
-- exclusive advisory lock on its LISTEN connection: key (1395806030, the
-- outbox's oid), 1395806030 being 'S3ON' in ASCII, the oid keeping two
-- outboxes of one database apart. A producer's trigger tries that lock in
-- shared mode, which producers never contend for among themselves: if it
-- gets it, no dispatcher is draining, so it lets go and calls pg_notify();
-- if not, it skips the notification. A dispatcher that dies or loses its
-- connection releases the lock with its session, at once.
--
-- As with 002, only a transaction that saw the lock held and commits after
-- the dispatcher's last claim goes unannounced, and the sweep delivers it.
-- Any session that holds this key silences the wake-ups the same way; the
-- sweep bounds the delay it can cause, never a loss.

BEGIN;
SET LOCAL client_min_messages = warning;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM notification_schema_version WHERE version = 3) THEN
		RAISE EXCEPTION 'apply sql/003_cheap_event_type_check.sql before sql/004_busy_lock.sql';
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION notification_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF pg_try_advisory_lock_shared(1395806030, TG_RELID::int) THEN
		PERFORM pg_advisory_unlock_shared(1395806030, TG_RELID::int);
		PERFORM pg_notify('notification_outbox', '');
	END IF;
	RETURN NULL;
END
$$;

DROP TABLE IF EXISTS notification_dispatcher_state;

INSERT INTO notification_schema_version (version) VALUES (4) ON CONFLICT DO NOTHING;

COMMIT;
