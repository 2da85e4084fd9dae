-- What a producer may insert: good rows are taken, bad rows are refused with
-- a clear error, and a rolled-back insert leaves nothing behind.
BEGIN;
SELECT plan(25);

\set bad_type 'new row for relation "notification_outbox" violates check constraint "event_type_must_be_1_to_255_chars_without_whitespace"'
\set null_type 'null value in column "event_type" of relation "notification_outbox" violates not-null constraint'
\set null_data 'null value in column "data" of relation "notification_outbox" violates not-null constraint'

SELECT count(*) AS n0 FROM notification_outbox \gset

-- a rolled-back insert leaves nothing
SAVEPOINT before_insert;
INSERT INTO notification_outbox (event_type, subject, data)
VALUES ('s3:ObjectCreated:Put', 'photos/a.jpg', '{"bucket":"photos"}');
SELECT isnt(notification_publish('s3:ObjectRemoved:Delete', 'photos/b.jpg'), NULL,
	    'notification_publish inside the savepoint returns an event_id');
SELECT is((SELECT count(*) FROM notification_outbox), :n0::bigint + 2,
	  'inside the savepoint both rows are visible');
ROLLBACK TO SAVEPOINT before_insert;
SELECT is((SELECT count(*) FROM notification_outbox), :n0::bigint,
	  'ROLLBACK TO SAVEPOINT leaves the outbox unchanged');

-- bad rows
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES (NULL)$$,
	'23502', :'null_type',
	'NULL event_type is refused (23502)');
SELECT throws_ok($$INSERT INTO notification_outbox (subject) VALUES ('k')$$,
	'23502', :'null_type',
	'a missing event_type is refused (23502)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES ('')$$,
	'23514', :'bad_type',
	'an empty event_type is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES ('s3:Object Created')$$,
	'23514', :'bad_type',
	'an event_type containing a space is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES (' s3:ObjectCreated:Put')$$,
	'23514', :'bad_type',
	'an event_type with a leading space is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES ('s3:ObjectCreated:Put ')$$,
	'23514', :'bad_type',
	'an event_type with a trailing space is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES (E's3:Object\tCreated')$$,
	'23514', :'bad_type',
	'an event_type containing a tab is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES (E's3:ObjectCreated:Put\n')$$,
	'23514', :'bad_type',
	'an event_type ending in a newline is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES (E'a\nb')$$,
	'23514', :'bad_type',
	'an event_type containing a newline is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES (E'a\rb')$$,
	'23514', :'bad_type',
	'an event_type containing a carriage return is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES (repeat('x', 256))$$,
	'23514', :'bad_type',
	'an event_type of 256 characters is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type) VALUES (repeat('x', 10000))$$,
	'23514', :'bad_type',
	'an event_type of 10000 characters is refused (23514)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type, data) VALUES ('t', '{"bucket":')$$,
	'22P02', 'invalid input syntax for type json',
	'invalid JSON data is refused (22P02)');
SELECT throws_ok($$INSERT INTO notification_outbox (event_type, data) VALUES ('t', NULL)$$,
	'23502', :'null_data',
	'NULL data is refused (23502)');
SELECT throws_ok($$INSERT INTO notification_outbox (id, event_type) VALUES (1, 't')$$,
	'428C9', NULL, 'a producer cannot choose the id (GENERATED ALWAYS)');
SELECT throws_ok($$SELECT notification_publish('', 'k')$$,
	'23514', :'bad_type',
	'notification_publish refuses an empty event_type (23514)');
SELECT throws_ok($$SELECT notification_publish(NULL, 'k')$$,
	'23502', NULL, 'notification_publish refuses a NULL event_type (23502)');
SELECT is((SELECT count(*) FROM notification_outbox), :n0::bigint,
	  'no refused row was stored');

-- good rows at the edges
SELECT lives_ok($$INSERT INTO notification_outbox (event_type) VALUES (repeat('x', 255))$$,
	'an event_type of exactly 255 characters is accepted');
SELECT lives_ok($$INSERT INTO notification_outbox (event_type) VALUES ('x')$$,
	'an event_type of 1 character is accepted');
SELECT lives_ok($$INSERT INTO notification_outbox (event_type, subject, data)
		 VALUES ('s3:ObjectCreated:CompleteMultipartUpload', NULL, '[1, "two", null]')$$,
	'a NULL subject and any JSON value as data are accepted');
SELECT is((SELECT count(*) FROM notification_outbox), :n0::bigint + 3,
	  'the three good rows were stored');

SELECT * FROM finish();
ROLLBACK;
