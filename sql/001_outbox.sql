-- s3o-notify migration 001: the transactional outbox.
--
-- Apply it to the producer's own database (the application that inserts
-- events), in order with the other files of this folder:
--
--     psql -v ON_ERROR_STOP=1 -d APPDB -f sql/001_outbox.sql
--
-- It runs in one transaction, can be applied again harmlessly, needs no
-- superuser (only CREATE on the target schema) and records its version in
-- notification_schema_version; s3o-notifyd refuses to start without it.
--
-- If the schema already holds a notification_outbox of another shape (for
-- example s3-orchestrator's own: id, event_type, payload, endpoint_url, ...)
-- the migration stops with an error: drain and drop that table, or rename it,
-- then apply again.
--
-- Grants, for a producer role that may only append events and a dispatcher
-- role for s3o-notifyd (replace the role names with yours):
--
--     GRANT USAGE ON SCHEMA public TO app_producer, s3o_notify;
--     GRANT INSERT ON notification_outbox TO app_producer;
--     GRANT EXECUTE ON FUNCTION notification_publish(text, text, jsonb) TO app_producer;
--
--     GRANT SELECT, UPDATE, DELETE ON notification_outbox TO s3o_notify;
--     GRANT SELECT, INSERT, UPDATE, DELETE ON notification_delivery TO s3o_notify;
--     GRANT SELECT ON notification_schema_version TO s3o_notify;
--
-- Design: notification_outbox is the hot table. Producers insert; a daemon
-- claims new rows with a lease and a claim token, POSTs them, and deletes
-- the row when every endpoint answered 2xx: one insert, one update, one
-- delete per event on the happy path. Only when an endpoint fails (or is too
-- busy to take the event now) does that endpoint's retry state go to
-- notification_delivery, one row per (event, endpoint); the event row then
-- stays, marked fanned_out, as the payload until its last delivery row is
-- gone.

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

CREATE TABLE IF NOT EXISTS notification_outbox (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event_id uuid NOT NULL DEFAULT gen_random_uuid(),
	event_type text NOT NULL
		CONSTRAINT event_type_must_be_1_to_255_chars_without_whitespace
		CHECK (event_type ~ '^[^[:space:]]{1,255}$'),
	subject text,
	data jsonb NOT NULL DEFAULT '{}',
	source text,
	created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	-- dispatcher state: every column below has a default
	fanned_out boolean NOT NULL DEFAULT false,
	lease_until timestamptz,
	claim_token uuid
) WITH (
	-- room for HOT updates of the lease, and vacuum that keeps up with churn
	fillfactor = 80,
	autovacuum_vacuum_scale_factor = 0.0,
	autovacuum_vacuum_threshold = 5000,
	autovacuum_vacuum_insert_scale_factor = 0.0,
	autovacuum_vacuum_insert_threshold = 5000,
	autovacuum_analyze_scale_factor = 0.05,
	autovacuum_vacuum_cost_delay = 0
);

-- The claim of new events walks this partial index in id order.
CREATE INDEX IF NOT EXISTS notification_outbox_new_idx
	ON notification_outbox (id) WHERE NOT fanned_out;
-- The sweep finds events whose last delivery row is gone through this one.
CREATE INDEX IF NOT EXISTS notification_outbox_fanned_idx
	ON notification_outbox (id) WHERE fanned_out;

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

-- One notification per transaction: pg_notify folds identical payloads
-- within a transaction and delivers at commit, never on rollback.
CREATE OR REPLACE FUNCTION notification_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('notification_outbox', '');
	RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS notification_outbox_notify ON notification_outbox;
CREATE TRIGGER notification_outbox_notify
	AFTER INSERT ON notification_outbox
	FOR EACH STATEMENT EXECUTE FUNCTION notification_outbox_notify();

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
