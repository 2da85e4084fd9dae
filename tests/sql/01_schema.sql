-- The schema of sql/001_schema.sql: tables, columns, types, defaults,
-- storage parameters, indexes, the trigger, the functions and the recorded
-- version.
BEGIN;
SELECT plan(75);

-- tables
SELECT has_table('notification_outbox');
SELECT has_table('notification_delivery');
SELECT has_table('notification_schema_version');
SELECT tables_are(ARRAY['notification_outbox', 'notification_delivery',
			'notification_schema_version']);

-- notification_outbox
SELECT columns_are('notification_outbox', ARRAY['id', 'event_id', 'event_type', 'subject', 'data',
	'source', 'created_at', 'fanned_out', 'lease_until', 'claim_token']);
SELECT col_type_is('notification_outbox', 'id', 'bigint');
SELECT col_type_is('notification_outbox', 'event_id', 'uuid');
SELECT col_type_is('notification_outbox', 'event_type', 'text');
SELECT col_type_is('notification_outbox', 'subject', 'text');
SELECT col_type_is('notification_outbox', 'data', 'jsonb');
SELECT col_type_is('notification_outbox', 'source', 'text');
SELECT col_type_is('notification_outbox', 'created_at', 'timestamp with time zone');
SELECT col_type_is('notification_outbox', 'fanned_out', 'boolean');
SELECT col_type_is('notification_outbox', 'lease_until', 'timestamp with time zone');
SELECT col_type_is('notification_outbox', 'claim_token', 'uuid');
SELECT col_is_pk('notification_outbox', 'id');
SELECT is((SELECT attidentity::text FROM pg_attribute
	    WHERE attrelid = 'notification_outbox'::regclass AND attname = 'id'),
	  'a', 'notification_outbox.id is GENERATED ALWAYS AS IDENTITY');
SELECT col_not_null('notification_outbox', 'event_id');
SELECT col_not_null('notification_outbox', 'event_type');
SELECT col_is_null('notification_outbox', 'subject');
SELECT col_not_null('notification_outbox', 'data');
SELECT col_is_null('notification_outbox', 'source');
SELECT col_not_null('notification_outbox', 'created_at');
SELECT col_not_null('notification_outbox', 'fanned_out');
SELECT col_is_null('notification_outbox', 'lease_until');
SELECT col_is_null('notification_outbox', 'claim_token');
SELECT col_default_is('notification_outbox', 'event_id', 'gen_random_uuid()');
SELECT col_default_is('notification_outbox', 'data', '{}'::jsonb);
SELECT col_default_is('notification_outbox', 'created_at', 'clock_timestamp()');
SELECT col_default_is('notification_outbox', 'fanned_out', false);
SELECT col_hasnt_default('notification_outbox', 'event_type');
SELECT col_hasnt_default('notification_outbox', 'subject');
SELECT col_hasnt_default('notification_outbox', 'source');
SELECT col_hasnt_default('notification_outbox', 'lease_until');
SELECT col_hasnt_default('notification_outbox', 'claim_token');
SELECT is((SELECT count(*)::int FROM pg_constraint
	    WHERE conrelid = 'notification_outbox'::regclass AND contype = 'c'
	      AND conname = 'event_type_must_be_1_to_255_chars_without_whitespace'),
	  1, 'notification_outbox has the event_type check constraint');
SELECT is((SELECT pg_get_constraintdef(oid) FROM pg_constraint
	    WHERE conrelid = 'notification_outbox'::regclass
	      AND conname = 'event_type_must_be_1_to_255_chars_without_whitespace'),
	  $$CHECK ((((length(event_type) >= 1) AND (length(event_type) <= 255)) AND (event_type !~ '[[:space:]]'::text)))$$,
	  'the event_type check uses length() and a one-character class, not a bounded regex');
SELECT is((SELECT reloptions FROM pg_class WHERE oid = 'notification_outbox'::regclass),
	  ARRAY['autovacuum_vacuum_scale_factor=0.0', 'autovacuum_vacuum_threshold=5000',
		'autovacuum_vacuum_insert_scale_factor=0.0', 'autovacuum_vacuum_insert_threshold=5000',
		'autovacuum_analyze_scale_factor=0.05', 'autovacuum_vacuum_cost_delay=0',
		'fillfactor=50'],
	  'notification_outbox: fillfactor 50 (every claim a HOT update) and its autovacuum settings');

-- notification_delivery
SELECT columns_are('notification_delivery', ARRAY['outbox_id', 'endpoint', 'attempts', 'due_at',
	'last_error', 'lease_until', 'claim_token']);
SELECT col_type_is('notification_delivery', 'outbox_id', 'bigint');
SELECT col_type_is('notification_delivery', 'endpoint', 'text');
SELECT col_type_is('notification_delivery', 'attempts', 'integer');
SELECT col_type_is('notification_delivery', 'due_at', 'timestamp with time zone');
SELECT col_type_is('notification_delivery', 'last_error', 'text');
SELECT col_type_is('notification_delivery', 'lease_until', 'timestamp with time zone');
SELECT col_type_is('notification_delivery', 'claim_token', 'uuid');
SELECT col_is_pk('notification_delivery', ARRAY['outbox_id', 'endpoint']);
SELECT col_default_is('notification_delivery', 'attempts', 0);
SELECT col_default_is('notification_delivery', 'due_at', 'now()');
SELECT col_not_null('notification_delivery', 'due_at');
SELECT col_is_null('notification_delivery', 'lease_until');
SELECT is((SELECT reloptions FROM pg_class WHERE oid = 'notification_delivery'::regclass),
	  ARRAY['fillfactor=80', 'autovacuum_vacuum_scale_factor=0.0',
		'autovacuum_vacuum_threshold=1000', 'autovacuum_vacuum_cost_delay=0'],
	  'notification_delivery: fillfactor 80 and its autovacuum settings');

-- notification_schema_version
SELECT columns_are('notification_schema_version', ARRAY['version', 'applied_at']);
SELECT col_is_pk('notification_schema_version', 'version');
SELECT results_eq('SELECT version FROM notification_schema_version ORDER BY version', ARRAY[1],
		  'notification_schema_version holds exactly version 1, which a 002 migration can require');

-- indexes
SELECT indexes_are('notification_outbox',
		   ARRAY['notification_outbox_pkey', 'notification_outbox_new_idx',
			 'notification_outbox_fanned_idx']);
SELECT has_index('notification_outbox', 'notification_outbox_new_idx', 'id');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
	    WHERE indexrelid = 'notification_outbox_new_idx'::regclass),
	  '(NOT fanned_out)', 'notification_outbox_new_idx is partial on NOT fanned_out');
SELECT has_index('notification_outbox', 'notification_outbox_fanned_idx', 'id');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
	    WHERE indexrelid = 'notification_outbox_fanned_idx'::regclass),
	  'fanned_out', 'notification_outbox_fanned_idx is partial on fanned_out');
SELECT indexes_are('notification_delivery',
		   ARRAY['notification_delivery_pkey', 'notification_delivery_due_idx']);
SELECT has_index('notification_delivery', 'notification_delivery_due_idx',
		 ARRAY['endpoint', 'due_at']);

-- the trigger: AFTER INSERT, FOR EACH STATEMENT, enabled
SELECT triggers_are('notification_outbox', ARRAY['notification_outbox_notify']);
SELECT trigger_is('notification_outbox', 'notification_outbox_notify',
		  'notification_outbox_notify');
SELECT is((SELECT tgtype::int FROM pg_trigger
	    WHERE tgrelid = 'notification_outbox'::regclass
	      AND tgname = 'notification_outbox_notify'),
	  4, 'the trigger is AFTER INSERT FOR EACH STATEMENT (tgtype 4)');
SELECT is((SELECT tgenabled::text FROM pg_trigger
	    WHERE tgrelid = 'notification_outbox'::regclass
	      AND tgname = 'notification_outbox_notify'),
	  'O', 'the trigger is enabled');
-- The busy check is the trigger's WHEN, so while a dispatcher holds the key
-- no trigger event is queued and the function is never called.
SELECT matches((SELECT pg_get_triggerdef(oid) FROM pg_trigger
		 WHERE tgrelid = 'notification_outbox'::regclass
		   AND tgname = 'notification_outbox_notify'),
	       'WHEN \(\(pg_try_advisory_lock_shared\(1395806030, .*\) AND pg_advisory_unlock_shared\(1395806030, .*\)\)\) EXECUTE FUNCTION notification_outbox_notify\(\)$',
	       'the trigger fires only when its shared try of the busy key succeeds, and lets go of it');
SELECT function_returns('notification_outbox_notify', 'trigger');
SELECT isnt_definer('notification_outbox_notify', ARRAY[]::text[]);
SELECT is((SELECT proconfig FROM pg_proc WHERE oid = 'notification_outbox_notify()'::regprocedure),
	  NULL, 'notification_outbox_notify sets no configuration (no search_path of its own)');

-- notification_publish(text, text, jsonb DEFAULT '{}') RETURNS uuid
SELECT has_function('notification_publish', ARRAY['text', 'text', 'jsonb']);
SELECT function_returns('notification_publish', ARRAY['text', 'text', 'jsonb'], 'uuid');
SELECT isnt_definer('notification_publish', ARRAY['text', 'text', 'jsonb']);
SELECT is(pg_get_function_arguments('notification_publish(text, text, jsonb)'::regprocedure),
	  'p_event_type text, p_subject text, p_data jsonb DEFAULT ''{}''::jsonb',
	  'notification_publish arguments, data defaults to {}');
SELECT volatility_is('notification_publish', ARRAY['text', 'text', 'jsonb'], 'volatile');

SELECT * FROM finish();
ROLLBACK;
