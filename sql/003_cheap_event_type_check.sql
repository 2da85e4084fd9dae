-- s3o-notify migration 003: the same event_type rule, checked cheaply.
--
-- Apply after 002, in the producer's database:
--
--     psql -v ON_ERROR_STOP=1 -d APPDB -f sql/003_cheap_event_type_check.sql
--
-- One transaction, idempotent, no superuser, no new grants.
--
-- Why: 001 checked event_type with the regular expression
-- '^[^[:space:]]{1,255}$'. PostgreSQL evaluates a CHECK on every INSERT and
-- on every UPDATE of the row (each claim), and its regex engine spends about
-- 27 us on that bounded repetition: a third of the database's CPU while the
-- dispatcher drained a backlog (perf). length() plus a one-character class
-- accepts and refuses exactly the same strings in about 0.3 us. The table is
-- locked (ACCESS EXCLUSIVE) for the scan that validates the new check: apply
-- it when the outbox is small, which it is while a dispatcher keeps up.

BEGIN;
SET LOCAL client_min_messages = warning;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM notification_schema_version WHERE version = 2) THEN
		RAISE EXCEPTION 'apply sql/002_notify_when_idle.sql before sql/003_cheap_event_type_check.sql';
	END IF;
	IF EXISTS (SELECT 1 FROM pg_constraint
		   WHERE conrelid = 'notification_outbox'::regclass
		     AND conname = 'event_type_must_be_1_to_255_chars_without_whitespace'
		     AND pg_get_constraintdef(oid) LIKE '%{1,255}%') THEN
		ALTER TABLE notification_outbox
			DROP CONSTRAINT event_type_must_be_1_to_255_chars_without_whitespace,
			ADD CONSTRAINT event_type_must_be_1_to_255_chars_without_whitespace
			CHECK (length(event_type) BETWEEN 1 AND 255 AND event_type !~ '[[:space:]]');
	END IF;
END
$$;

INSERT INTO notification_schema_version (version) VALUES (3) ON CONFLICT DO NOTHING;

COMMIT;
