-- bench/claim_delete.sql: the database's part of delivering, without HTTP.
-- One claim with the daemon's own statement (SQL_CLAIM_NEW in lib/store.c,
-- less its cursor), then the deletion of the claimed rows as a settlement
-- does it (SQL_NEW_DONE). The claimed rows' text is formed in the server
-- and summed, not sent. The producer-tax phase runs it from one pgbench
-- client (-M prepared) beside the producers, with the trigger disabled:
-- what the design's "one claim and one delete per event" costs them.
-- The limit and the lease are parameters, as in the daemon, so that with
-- plan_cache_mode = force_custom_plan (the daemon's setting, which the
-- runner passes in PGOPTIONS) every claim is planned for the table as it is:
-- a statement without parameters keeps the plan of its first run, made
-- here on an empty table.
\set limit 256
\set lease_ms 30000
WITH c AS (UPDATE notification_outbox o
           SET lease_until = now() + :lease_ms * interval '1 millisecond', claim_token = gen_random_uuid()
           WHERE o.id = ANY(ARRAY(SELECT id FROM notification_outbox
                                  WHERE NOT fanned_out AND (lease_until IS NULL OR lease_until < now())
                                  ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED))
           RETURNING o.id, o.claim_token, o.event_id, o.event_type, o.subject, o.source,
                     o.data::text AS data, (extract(epoch FROM o.created_at) * 1000000)::bigint AS created)
SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(claim_token), '{}') AS tokens, count(*) AS n,
       sum(length(event_id::text) + length(event_type) + length(coalesce(subject, ''))
           + length(coalesce(source, '')) + length(data) + created % 10) AS chars
FROM c \gset
DELETE FROM notification_outbox WHERE id = ANY(:ids::bigint[]) AND claim_token = ANY(:tokens::uuid[]);
\if :n = 0
\sleep 2 ms
\endif
