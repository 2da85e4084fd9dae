-- The dispatcher's role for docker/compose.yaml, with exactly the grants the
-- headers of sql/001_outbox.sql to sql/006_busy_check_in_when.sql list for
-- s3o-notifyd. Applied by the migrate service after the migrations, as a DBA
-- would:
--
--     psql -v ON_ERROR_STOP=1 -v password="$S3O_DB_PASSWORD" -f roles.sql
--
-- Idempotent: it can run on every "up".
SELECT 'CREATE ROLE s3o_notify LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 's3o_notify') \gexec
ALTER ROLE s3o_notify LOGIN PASSWORD :'password';

GRANT USAGE ON SCHEMA public TO s3o_notify;
GRANT SELECT, UPDATE, DELETE ON notification_outbox TO s3o_notify;
GRANT SELECT, INSERT, UPDATE, DELETE ON notification_delivery TO s3o_notify;
GRANT SELECT ON notification_schema_version TO s3o_notify;
