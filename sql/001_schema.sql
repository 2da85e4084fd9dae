-- s3o-notify schema, version 1: the transactional outbox.
--
-- Creates, in the first schema of the search_path:
--   notification_outbox          events: producers append, dispatchers claim and delete
--   notification_delivery        retry state, one row per (event, endpoint) that failed
--   notification_schema_version  the versions applied (s3o-notifyd checks it)
--   notification_publish()       the producer's function: append one event
--   notification_outbox_notify   the trigger that wakes an idle dispatcher at commit
--
-- Apply it to the producer's database, as the role that is to own the tables:
--
--     psql -v ON_ERROR_STOP=1 -d APPDB -f sql/001_schema.sql
--
-- One transaction; applying it again is harmless; no superuser needed (only
-- CREATE on the target schema). Later migrations (002_..., 003_...) apply
-- after it, in order. Roles and grants: sql/roles.example.sql. Why the schema
-- is shaped so: docs/design.md; running it: docs/database.md.

BEGIN;
SET LOCAL client_min_messages = warning;

-- Look only in the schema the tables below are created in (the first
-- existing schema of the search_path), not along the whole search_path: a
-- table of either name in a later schema must neither block nor hide this.
DO $$
BEGIN
	IF current_schema() IS NOT NULL
	   AND to_regclass(format('%I.notification_outbox', current_schema())) IS NOT NULL
	   AND to_regclass(format('%I.notification_schema_version', current_schema())) IS NULL THEN
		RAISE EXCEPTION 'a table notification_outbox already exists in schema % and was not created by s3o-notify',
			current_schema()
		USING HINT = 'It is probably s3-orchestrator''s own outbox. Drain it (let its dispatcher deliver every row) and DROP it, or rename it (ALTER TABLE notification_outbox RENAME TO notification_outbox_old), then apply this migration again.';
	END IF;
END
$$;

CREATE TABLE IF NOT EXISTS notification_schema_version (
	version integer PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
);

-- The hot table. Producers insert (event_id, event_type, subject, data,
-- source); every other column belongs to the dispatcher and has a default.
CREATE TABLE IF NOT EXISTS notification_outbox (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event_id uuid NOT NULL DEFAULT gen_random_uuid(),
	event_type text NOT NULL
		CONSTRAINT event_type_must_be_1_to_255_chars_without_whitespace
		CHECK (length(event_type) BETWEEN 1 AND 255 AND event_type !~ '[[:space:]]'),
	subject text,
	data jsonb NOT NULL DEFAULT '{}',
	source text,
	created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	-- dispatcher state
	fanned_out boolean NOT NULL DEFAULT false,
	lease_until timestamptz,
	claim_token uuid
) WITH (
	-- vacuum that keeps up with the churn, and half of each page left free
	-- so that a claim's update of the lease is a HOT update
	autovacuum_vacuum_scale_factor = 0.0,
	autovacuum_vacuum_threshold = 5000,
	autovacuum_vacuum_insert_scale_factor = 0.0,
	autovacuum_vacuum_insert_threshold = 5000,
	autovacuum_analyze_scale_factor = 0.05,
	autovacuum_vacuum_cost_delay = 0,
	fillfactor = 50
);

-- The claim of new events walks this partial index in id order.
CREATE INDEX IF NOT EXISTS notification_outbox_new_idx
	ON notification_outbox (id) WHERE NOT fanned_out;
-- The sweep finds events whose last delivery row is gone through this one.
CREATE INDEX IF NOT EXISTS notification_outbox_fanned_idx
	ON notification_outbox (id) WHERE fanned_out;

-- Written only when an endpoint fails or is too busy: the event row then
-- stays, marked fanned_out, until its last delivery row is gone.
CREATE TABLE IF NOT EXISTS notification_delivery (
	outbox_id bigint NOT NULL,
	endpoint text NOT NULL,
	attempts integer NOT NULL DEFAULT 0,
	due_at timestamptz NOT NULL DEFAULT now(),
	last_error text,
	lease_until timestamptz,
	claim_token uuid,
	PRIMARY KEY (outbox_id, endpoint)
) WITH (
	fillfactor = 80,
	autovacuum_vacuum_scale_factor = 0.0,
	autovacuum_vacuum_threshold = 1000,
	autovacuum_vacuum_cost_delay = 0
);

-- The claim of due retries, per endpoint, in due order.
CREATE INDEX IF NOT EXISTS notification_delivery_due_idx
	ON notification_delivery (endpoint, due_at);

-- At most one notification per transaction: pg_notify folds identical
-- payloads within a transaction and delivers at commit, never on rollback.
CREATE OR REPLACE FUNCTION notification_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('notification_outbox', '');
	RETURN NULL;
END
$$;

-- The busy lock. Key: the advisory lock (1395806030, oid of
-- notification_outbox); 1395806030 is 0x53334F4E, 'S3ON' in ASCII, and
-- lib/store.c holds the same value. A draining dispatcher holds it
-- exclusively on its LISTEN connection. The WHEN below tries it in shared
-- mode and lets go at once: it is true, and the trigger notifies, only when
-- no dispatcher holds it. The regclass is resolved here, once.
DROP TRIGGER IF EXISTS notification_outbox_notify ON notification_outbox;
CREATE TRIGGER notification_outbox_notify
	AFTER INSERT ON notification_outbox
	FOR EACH STATEMENT
	WHEN (pg_try_advisory_lock_shared(1395806030, 'notification_outbox'::regclass::oid::int)
	      AND pg_advisory_unlock_shared(1395806030, 'notification_outbox'::regclass::oid::int))
	EXECUTE FUNCTION notification_outbox_notify();

-- Append one event; returns its event_id. Needs only INSERT on the table.
CREATE OR REPLACE FUNCTION notification_publish(p_event_type text, p_subject text,
						p_data jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
	v_id uuid := gen_random_uuid();
BEGIN
	INSERT INTO notification_outbox (event_id, event_type, subject, data)
	VALUES (v_id, p_event_type, p_subject, coalesce(p_data, '{}'));
	RETURN v_id;
END
$$;

INSERT INTO notification_schema_version (version) VALUES (1) ON CONFLICT DO NOTHING;

COMMIT;
