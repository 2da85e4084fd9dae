-- notification_publish stores the event and returns its event_id; a plain
-- INSERT gets every dispatcher column from its default.
BEGIN;
SELECT plan(26);

-- notification_publish with the data argument left out
SELECT notification_publish('s3:ObjectCreated:Put', 'photos/2026/a.jpg') AS eid1 \gset
SELECT is((SELECT count(*)::int FROM notification_outbox WHERE event_id = :'eid1'), 1,
	  'notification_publish stored exactly one row with the event_id it returned');
SELECT row_eq($$SELECT event_type, subject, data, source FROM notification_outbox
		WHERE event_id = '$$ || :'eid1' || $$'$$,
	      ROW('s3:ObjectCreated:Put'::text, 'photos/2026/a.jpg'::text, '{}'::jsonb, NULL::text),
	      'the row holds the type and subject given, data {} and source NULL');

-- with data, and with an explicit NULL data
SELECT notification_publish('s3:ObjectCreated:Put', 'photos/2026/b.jpg',
			    '{"bucket":"photos","size":2048576}'::jsonb) AS eid2 \gset
SELECT is((SELECT data FROM notification_outbox WHERE event_id = :'eid2'),
	  '{"bucket":"photos","size":2048576}'::jsonb, 'notification_publish stores the data given');
SELECT notification_publish('backend.circuit.opened', NULL, NULL) AS eid3 \gset
SELECT row_eq($$SELECT subject, data FROM notification_outbox WHERE event_id = '$$ || :'eid3' || $$'$$,
	      ROW(NULL::text, '{}'::jsonb),
	      'notification_publish with NULL subject and NULL data stores NULL and {}');
SELECT isnt(:'eid1'::uuid, :'eid2'::uuid, 'each call returns a new event_id');
SELECT is((SELECT count(DISTINCT event_id)::int FROM notification_outbox
	    WHERE event_id IN (:'eid1', :'eid2', :'eid3')), 3, 'three calls, three events');

-- three calls in one statement: three rows, three ids
SELECT is((SELECT count(DISTINCT notification_publish('replication.completed', NULL, jsonb_build_object('n', g)))::int
	    FROM generate_series(1, 3) AS g), 3, 'notification_publish in a set-returning query');

-- defaults of a plain INSERT
INSERT INTO notification_outbox (event_type) VALUES ('service.started');
SELECT id AS id4, event_id AS eid4 FROM notification_outbox
 WHERE event_type = 'service.started' \gset
SELECT isnt(:'eid4'::uuid, NULL, 'event_id is generated');
SELECT matches(:'eid4'::text, '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$',
	       'event_id is a version 4 uuid');
SELECT ok(:id4 > 0, 'id is generated');
SELECT ok((SELECT created_at FROM notification_outbox WHERE id = :id4)
	   BETWEEN now() AND clock_timestamp(), 'created_at is set to the time of the insert');
SELECT is((SELECT fanned_out FROM notification_outbox WHERE id = :id4), false, 'fanned_out is false');
SELECT is((SELECT lease_until FROM notification_outbox WHERE id = :id4), NULL, 'lease_until is NULL');
SELECT is((SELECT claim_token FROM notification_outbox WHERE id = :id4), NULL, 'claim_token is NULL');
SELECT is((SELECT data FROM notification_outbox WHERE id = :id4), '{}'::jsonb, 'data is {}');
SELECT is((SELECT subject FROM notification_outbox WHERE id = :id4), NULL, 'subject is NULL');
SELECT is((SELECT source FROM notification_outbox WHERE id = :id4), NULL, 'source is NULL');

-- ids grow; a producer may set its own event_id and source
INSERT INTO notification_outbox (event_type) VALUES ('service.stopping');
SELECT ok((SELECT id FROM notification_outbox WHERE event_type = 'service.stopping') > :id4,
	  'ids increase in insert order');
INSERT INTO notification_outbox (event_id, event_type, source)
VALUES ('0b9e6c4e-8a53-4cde-9b5e-3f1c2a7d9e10', 'config.reload_failed', '/my-app');
SELECT row_eq($$SELECT event_type, source FROM notification_outbox
		WHERE event_id = '0b9e6c4e-8a53-4cde-9b5e-3f1c2a7d9e10'$$,
	      ROW('config.reload_failed'::text, '/my-app'::text),
	      'a producer-supplied event_id and source are kept');

-- the producer contract examples from docs/database.md work as written
SELECT lives_ok($$INSERT INTO notification_outbox (event_type, subject, data)
		 VALUES ('s3:ObjectCreated:Put', 'photos/2026/a.jpg',
			 '{"bucket":"photos","key":"photos/2026/a.jpg","size":2048576}')$$,
	'the documented INSERT works');
SELECT lives_ok($$SELECT notification_publish('s3:ObjectCreated:Put', 'photos/2026/a.jpg',
						'{"bucket":"photos"}'::jsonb)$$,
	'the documented notification_publish call works');

-- the dispatcher's state has defaults too
INSERT INTO notification_delivery (outbox_id, endpoint) VALUES (:id4, 'storage');
SELECT is((SELECT attempts FROM notification_delivery WHERE outbox_id = :id4), 0,
	  'delivery attempts default to 0');
SELECT ok((SELECT due_at FROM notification_delivery WHERE outbox_id = :id4) = now(),
	  'delivery due_at defaults to now()');
SELECT is((SELECT lease_until FROM notification_delivery WHERE outbox_id = :id4), NULL,
	  'delivery lease_until is NULL');
SELECT is((SELECT claim_token FROM notification_delivery WHERE outbox_id = :id4), NULL,
	  'delivery claim_token is NULL');
SELECT throws_ok($$INSERT INTO notification_delivery (outbox_id, endpoint)
		  VALUES ($$ || :id4 || $$, 'storage')$$,
	'23505', NULL, 'one delivery row per (event, endpoint)');

SELECT * FROM finish();
ROLLBACK;
