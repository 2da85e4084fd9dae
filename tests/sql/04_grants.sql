-- The grants of sql/roles.example.sql are enough, and no more than enough: a
-- producer can append events but not read, change or remove them; the
-- dispatcher can do its work. The test applies that file itself, with role
-- names that carry the backend pid so parallel runs on one cluster do not
-- collide; the roles exist only inside this transaction.
BEGIN;
SELECT plan(39);

SELECT 's3o_test_producer_' || pg_backend_pid() AS producer,
       's3o_test_dispatcher_' || pg_backend_pid() AS dispatcher \gset
\ir ../../sql/roles.example.sql

-- what the file created and granted, exactly
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = :'dispatcher'), true,
	  'roles.example.sql created the dispatcher role, with LOGIN');
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = :'producer'), false,
	  'roles.example.sql created the missing producer role, NOLOGIN');
SELECT is((SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles
	    WHERE rolname = :'dispatcher'), false,
	  'the dispatcher role has no special attribute');
SELECT table_privs_are('notification_outbox', :'producer', ARRAY['INSERT']);
SELECT table_privs_are('notification_outbox', :'dispatcher', ARRAY['SELECT', 'UPDATE', 'DELETE']);
SELECT table_privs_are('notification_delivery', :'producer', ARRAY[]::text[]);
SELECT table_privs_are('notification_delivery', :'dispatcher',
		       ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']);
SELECT table_privs_are('notification_schema_version', :'producer', ARRAY[]::text[]);
SELECT table_privs_are('notification_schema_version', :'dispatcher', ARRAY['SELECT']);
SELECT function_privs_are('notification_publish', ARRAY['text', 'text', 'jsonb'], :'producer',
			  ARRAY['EXECUTE']);

SELECT count(*) AS n0 FROM notification_outbox \gset

-- the producer
SET LOCAL ROLE :"producer";
SELECT is(current_user::text, :'producer', 'running as the producer role');
SELECT lives_ok($$INSERT INTO notification_outbox (event_type, subject, data)
		 VALUES ('s3:ObjectCreated:Put', 'grants/a.jpg', '{"bucket":"photos"}')$$,
	'the producer can INSERT');
SELECT lives_ok($$INSERT INTO notification_outbox (event_id, event_type, source)
		 VALUES ('5d4c2f0e-6d1b-4f3e-8a7c-9b2e1f0a3c4d', 'service.started', '/app')$$,
	'the producer can INSERT its own event_id and source');
SELECT lives_ok($$SELECT notification_publish('s3:ObjectRemoved:Delete', 'grants/b.jpg')$$,
	'the producer can call notification_publish');
SELECT notification_publish('backend.circuit.opened', 'b1', '{"backend":"b1"}') AS eid \gset
SELECT isnt(:'eid'::uuid, NULL, 'notification_publish returns an event_id to the producer');
SELECT throws_ok($$SELECT count(*) FROM notification_outbox$$,
	'42501', 'permission denied for table notification_outbox',
	'the producer cannot SELECT the outbox');
SELECT throws_ok($$UPDATE notification_outbox SET fanned_out = true$$,
	'42501', 'permission denied for table notification_outbox',
	'the producer cannot UPDATE the outbox');
SELECT throws_ok($$DELETE FROM notification_outbox$$,
	'42501', 'permission denied for table notification_outbox',
	'the producer cannot DELETE from the outbox');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES ('t') RETURNING event_id$$,
	'42501', 'permission denied for table notification_outbox',
	'the producer cannot read back through INSERT ... RETURNING');
SELECT throws_ok($$TRUNCATE notification_outbox$$,
	'42501', 'permission denied for table notification_outbox',
	'the producer cannot TRUNCATE the outbox');
SELECT throws_ok($$SELECT count(*) FROM notification_delivery$$,
	'42501', 'permission denied for table notification_delivery',
	'the producer cannot SELECT the deliveries');
SELECT throws_ok($$INSERT INTO notification_delivery (outbox_id, endpoint) VALUES (1, 'e')$$,
	'42501', 'permission denied for table notification_delivery',
	'the producer cannot INSERT deliveries');
SELECT throws_ok($$DELETE FROM notification_schema_version$$,
	'42501', 'permission denied for table notification_schema_version',
	'the producer cannot touch the schema version');
RESET ROLE;

SELECT is(current_user, session_user, 'back to the session user');
SELECT is((SELECT count(*) FROM notification_outbox), :n0::bigint + 4,
	  'the producer''s four events were stored');
SELECT row_eq($$SELECT event_type, subject, data FROM notification_outbox WHERE event_id = '$$
	      || :'eid' || $$'$$,
	      ROW('backend.circuit.opened'::text, 'b1'::text, '{"backend":"b1"}'::jsonb),
	      'the event published by the producer is stored under the returned event_id');

-- the dispatcher
SET LOCAL ROLE :"dispatcher";
SELECT is((SELECT max(version) FROM notification_schema_version), 1,
	  'the dispatcher can read the schema version');
SELECT is((SELECT count(*) FROM notification_outbox), :n0::bigint + 4,
	  'the dispatcher can SELECT the outbox');
SELECT lives_ok($$
	UPDATE notification_outbox o SET lease_until = now() + interval '30 s',
	       claim_token = '11111111-2222-4333-8444-555555555555'
	 WHERE o.id = ANY(ARRAY(SELECT id FROM notification_outbox
		    WHERE NOT fanned_out AND (lease_until IS NULL OR lease_until < now())
		    ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED))$$,
	'the dispatcher can claim with FOR UPDATE SKIP LOCKED and UPDATE');
SELECT lives_ok($$
	INSERT INTO notification_delivery (outbox_id, endpoint, attempts, due_at, last_error)
	SELECT id, 'storage', 1, now() + interval '1 s', 'HTTP 503' FROM notification_outbox
	 WHERE event_id = '$$ || :'eid' || $$'$$,
	'the dispatcher can INSERT deliveries');
SELECT lives_ok($$UPDATE notification_outbox SET fanned_out = true
		   WHERE event_id = '$$ || :'eid' || $$'$$,
	'the dispatcher can mark an event fanned out');
SELECT lives_ok($$UPDATE notification_delivery SET attempts = attempts + 1, lease_until = NULL$$,
	'the dispatcher can UPDATE deliveries');
SELECT is((SELECT count(*)::int FROM notification_delivery WHERE endpoint = 'storage'), 1,
	  'the dispatcher can SELECT deliveries');
SELECT lives_ok($$DELETE FROM notification_delivery WHERE endpoint = 'storage'$$,
	'the dispatcher can DELETE deliveries');
SELECT lives_ok($$DELETE FROM notification_outbox
		   WHERE claim_token = '11111111-2222-4333-8444-555555555555' OR fanned_out$$,
	'the dispatcher can DELETE settled events');
SELECT throws_ok($$DELETE FROM notification_schema_version$$,
	'42501', 'permission denied for table notification_schema_version',
	'the dispatcher cannot change the schema version');
SELECT is(pg_try_advisory_lock(1395806030, 'notification_outbox'::regclass::oid::int), true,
	  'the dispatcher can take its busy lock');
SELECT is(pg_advisory_unlock(1395806030, 'notification_outbox'::regclass::oid::int), true,
	  'the dispatcher can release its busy lock');
RESET ROLE;

SELECT is((SELECT count(*) FROM notification_outbox WHERE event_id = :'eid'), 0::bigint,
	  'the dispatcher''s DELETE removed the settled event');

SELECT * FROM finish();
ROLLBACK;
