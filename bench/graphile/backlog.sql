-- bench/graphile/backlog.sql: the same backlog as bench/bulk.sql (types=1),
-- as :n graphile-worker jobs of the task "deliver" added in one
-- transaction; each payload is the event as notification_outbox holds it
-- (a fresh id, its type, subject, time and data, data.commit_us the insert
-- time). bench/run loads it with
--   pgbench -n -t 1 -f bench/graphile/backlog.sql -D n=N
SELECT count(*)
FROM graphile_worker.add_jobs(ARRAY(
    SELECT ROW('deliver',
               json_build_object('id', gen_random_uuid(),
                                 'type', 's3:ObjectCreated:Put',
                                 'subject', k,
                                 'time', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                                                 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                                 'data', jsonb_build_object('bucket', 'bench',
                                                            'key', k,
                                                            'size', (g::bigint * 7919) % 100000000,
                                                            'commit_us', (extract(epoch FROM clock_timestamp()) * 1e6)::bigint)),
               NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
    FROM generate_series(1, :n) AS g,
         LATERAL (SELECT 'uploads/2026/05/obj-' || lpad(g::text, 9, '0') || '.jpg' AS k) AS s));
