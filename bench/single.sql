-- bench/single.sql: one event per transaction, the shape of an application's
-- own insert. Used for the latency phase (pgbench -R 200) and for the
-- producer-tax phase (pgbench -c 16 -j 2 -T 10), with and without delivery.
-- data.commit_us is taken at the insert, just before COMMIT: the latency
-- measured from it includes the commit's WAL flush. data.client is pgbench's
-- client: bench/commit_latency.py finds the event's own transaction in
-- pgbench's log by it, and measures from the moment its COMMIT returned.
\set g random(1, 999999999)
\set size random(1, 100000000)
INSERT INTO notification_outbox (event_type, subject, data)
VALUES ('s3:ObjectCreated:Put',
        'uploads/2026/05/obj-' || lpad(:g::text, 9, '0') || '.jpg',
        jsonb_build_object('bucket', 'bench',
                           'key', 'uploads/2026/05/obj-' || lpad(:g::text, 9, '0') || '.jpg',
                           'size', :size,
                           'client', :client_id,
                           'commit_us', (extract(epoch FROM clock_timestamp()) * 1e6)::bigint));
