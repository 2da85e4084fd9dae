-- s3o-notify roles and grants: an example for the DBA, and what
-- docker/compose.yaml applies. Apply after the migrations, as a role that may
-- create roles and grant on the tables (their owner, or a superuser):
--
--     psql -1 -v ON_ERROR_STOP=1 -d APPDB -v password=SECRET -f sql/roles.example.sql
--
-- psql variables (-v NAME=VALUE), all optional:
--   dispatcher  the role s3o-notifyd logs in as (default s3o_notify); also
--               enough for s3o-notify status and purge
--   producer    the application's role, which appends events (default
--               app_producer); s3o-notify emit needs what it has
--   password    the dispatcher's login password; left unchanged when not set
-- A role that does not exist is created (the dispatcher LOGIN, the producer
-- NOLOGIN: give your application's real role instead). Running it again is
-- harmless. The tables are in schema public; edit the USAGE line if the
-- migration created them elsewhere.
--
-- These are exactly the privileges each side needs (tests/sql/04_grants.sql
-- applies this file and checks both: enough, and no more). The dispatcher
-- needs no privilege for its busy lock: advisory locks take none.

\if :{?dispatcher}
\else
\set dispatcher s3o_notify
\endif
\if :{?producer}
\else
\set producer app_producer
\endif

SELECT format('CREATE ROLE %I LOGIN', :'dispatcher')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'dispatcher') \gexec
SELECT format('CREATE ROLE %I NOLOGIN', :'producer')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'producer') \gexec
\if :{?password}
ALTER ROLE :"dispatcher" LOGIN PASSWORD :'password';
\endif

GRANT USAGE ON SCHEMA public TO :"producer", :"dispatcher";

-- The producer appends events, and can neither read nor change them.
GRANT INSERT ON notification_outbox TO :"producer";
GRANT EXECUTE ON FUNCTION notification_publish(text, text, jsonb) TO :"producer";

-- The dispatcher claims, fans out, retries and deletes.
GRANT SELECT, UPDATE, DELETE ON notification_outbox TO :"dispatcher";
GRANT SELECT, INSERT, UPDATE, DELETE ON notification_delivery TO :"dispatcher";
GRANT SELECT ON notification_schema_version TO :"dispatcher";
