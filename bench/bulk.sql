-- bench/bulk.sql: a backlog of :n events in one transaction, the way
-- bench/run loads it:  pgbench -n -t 1 -f bench/bulk.sql -D n=N -D types=K
-- With types=1 every event is s3:ObjectCreated:Put; with types=K > 1 the
-- events cycle through s3:ObjectCreated:Put0 .. Put<K-1> (one per endpoint).
-- data.commit_us is the insert time (clock_timestamp, microseconds since
-- the epoch), read by bench-receiver for its latency figures.
INSERT INTO notification_outbox (event_type, subject, data)
SELECT 's3:ObjectCreated:Put' || CASE WHEN :types > 1 THEN (g % :types)::text ELSE '' END,
       k,
       jsonb_build_object('bucket', 'bench',
                          'key', k,
                          'size', (g::bigint * 7919) % 100000000,
                          'commit_us', (extract(epoch FROM clock_timestamp()) * 1e6)::bigint)
FROM generate_series(1, :n) AS g,
     LATERAL (SELECT 'uploads/2026/05/obj-' || lpad(g::text, 9, '0') || '.jpg' AS k) AS s;
