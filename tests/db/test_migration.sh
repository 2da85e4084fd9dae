#!/bin/sh
# Migration behaviour that pgTAP cannot show from inside one transaction.
# Runs through tests/with-db, so the database already holds the migrations
# once; S3O_SQL_DIR points at sql/. Checks that:
#   - applying the migrations a second and a third time succeeds, keeps the
#     data and the grants, and changes nothing in the schema;
#   - a later migration can build on version 1, and applying 001 again keeps
#     the version it recorded;
#   - over s3-orchestrator's own notification_outbox the migration stops with
#     a clear error and touches nothing, and applies once that table is renamed;
#   - the lookup is confined to the schema the migration creates in;
#   - the migration needs no superuser;
#   - it is one transaction: a failure at its end leaves nothing behind;
#   - sql/roles.example.sql applies twice, as docker/compose.yaml runs it, and
#     the dispatcher role it creates can log in and read the schema version.
# Prints expected and got for every failure; exits 1 if anything failed.
set -u

sql_dir=${S3O_SQL_DIR:?S3O_SQL_DIR must point at the sql/ folder}
tag="$$"
user_role="s3o_mig_owner_$tag"
user_pw="pw_$tag"
grant_role="s3o_mig_grantee_$tag"
roles_dispatcher="s3o_mig_dispatcher_$tag"
roles_producer="s3o_mig_producer_$tag"
failures=0
checks=0

# The roles are cluster-wide: drop them even when a check fails. with-db drops
# the database afterwards.
cleanup()
{
	psql -X -q -c "DROP SCHEMA IF EXISTS mig_owned CASCADE" \
		-c "DROP OWNED BY $user_role, $grant_role" \
		-c "DROP ROLE IF EXISTS $user_role" -c "DROP ROLE IF EXISTS $grant_role" \
		>/dev/null 2>&1 || true
	psql -X -q -c "DROP OWNED BY $roles_dispatcher, $roles_producer" \
		-c "DROP ROLE IF EXISTS $roles_dispatcher" -c "DROP ROLE IF EXISTS $roles_producer" \
		>/dev/null 2>&1 || true
}
trap cleanup EXIT

ok()
{
	checks=$((checks + 1))
	echo "ok - $1"
}

fail()
{
	checks=$((checks + 1))
	failures=$((failures + 1))
	echo "not ok - $1"
	printf '#   expected: %s\n#   got:      %s\n' "$2" "$3"
}

# check_eq DESCRIPTION EXPECTED GOT
check_eq()
{
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		fail "$1" "$2" "$3"
	fi
}

# check_contains DESCRIPTION NEEDLE HAYSTACK (case-insensitive)
check_contains()
{
	if printf '%s' "$3" | grep -qi -- "$2"; then
		ok "$1"
	else
		fail "$1" "text containing '$2'" "$3"
	fi
}

# q SQL: one value, unaligned, stops on error (the error text is the value).
q()
{
	psql -X -q -A -t -v ON_ERROR_STOP=1 -c "$1" 2>&1
}

# apply_all: every migration in order, as DBA instructions say; stops at the
# first failure. Output (errors included) on stdout, status as psql's.
apply_all()
{
	for f in "$sql_dir"/[0-9][0-9][0-9]_*.sql; do
		psql -X -q -v ON_ERROR_STOP=1 -f "$f" 2>&1 || return 1
	done
}

# fingerprint SCHEMA: every notification_* relation, column, default,
# constraint, index, trigger, function and their grants in SCHEMA, one a line.
fingerprint()
{
	q "WITH rel AS (SELECT c.oid, c.relname, c.relkind, c.reloptions, c.relacl FROM pg_class c
			 WHERE c.relnamespace = '$1'::regnamespace AND c.relname LIKE 'notification%')
	   SELECT string_agg(x, ' | ' ORDER BY x) FROM (
		SELECT format('rel %s %s %s %s', relname, relkind, reloptions, relacl) FROM rel
		UNION ALL
		SELECT format('col %s.%s %s notnull=%s identity=%s default=%s', r.relname, a.attname,
			      format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
			      pg_get_expr(d.adbin, d.adrelid))
		  FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0
					     AND NOT a.attisdropped
		  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		UNION ALL
		SELECT format('con %s %s', conname, pg_get_constraintdef(k.oid))
		  FROM pg_constraint k JOIN rel r ON k.conrelid = r.oid
		UNION ALL
		SELECT format('idx %s', pg_get_indexdef(i.indexrelid))
		  FROM pg_index i JOIN rel r ON i.indrelid = r.oid
		UNION ALL
		SELECT format('trg %s %s', pg_get_triggerdef(t.oid), t.tgenabled)
		  FROM pg_trigger t JOIN rel r ON t.tgrelid = r.oid WHERE NOT t.tgisinternal
		UNION ALL
		SELECT format('fn %s %s %s %s', p.oid::regprocedure, md5(p.prosrc), p.proacl,
			      pg_get_function_arguments(p.oid))
		  FROM pg_proc p
		 WHERE p.pronamespace = '$1'::regnamespace AND p.proname LIKE 'notification%'
	   ) s(x)"
}

# objects SCHEMA: every relation and function in SCHEMA, whatever its name.
objects()
{
	q "SELECT coalesce(string_agg(x, ' ' ORDER BY x), '(none)') FROM (
		SELECT relname || ':' || relkind::text FROM pg_class
		 WHERE relnamespace = '$1'::regnamespace
		UNION ALL
		SELECT proname || '()' FROM pg_proc WHERE pronamespace = '$1'::regnamespace
	   ) s(x)"
}

legacy_table="CREATE TABLE notification_outbox (
	id bigserial PRIMARY KEY, event_type text, payload jsonb, endpoint_url text,
	created_at timestamptz, next_retry timestamptz, attempts int, last_error text);
INSERT INTO notification_outbox (event_type, payload, endpoint_url, created_at, attempts)
VALUES ('s3:ObjectCreated:Put', '{\"key\":\"legacy.jpg\"}', 'https://hooks.example.com/x',
	'2025-01-02 03:04:05+00', 2);"
legacy_row="SELECT concat_ws(',', id, event_type, payload->>'key', endpoint_url, attempts)"
legacy_expected="1,s3:ObjectCreated:Put,legacy.jpg,https://hooks.example.com/x,2"

echo "# 1. applying the migrations again"

check_eq "the test database starts at schema version 1" "1" \
	"$(q "SELECT string_agg(version::text, ',' ORDER BY version) FROM notification_schema_version")"
q "CREATE ROLE $grant_role NOLOGIN" >/dev/null
q "GRANT USAGE ON SCHEMA public TO $grant_role;
   GRANT INSERT ON notification_outbox TO $grant_role;
   GRANT EXECUTE ON FUNCTION notification_publish(text, text, jsonb) TO $grant_role" >/dev/null
eid=$(q "SELECT notification_publish('test.before', 'keep-me', '{\"n\":1}')")
q "INSERT INTO notification_delivery (outbox_id, endpoint, attempts, last_error)
   SELECT id, 'storage', 3, 'HTTP 503' FROM notification_outbox WHERE event_id = '$eid'" >/dev/null
# event_row: the event and its delivery row, as one line.
event_row()
{
	q "SELECT concat_ws(',', o.id, o.event_id, o.event_type, o.subject, o.data, o.created_at,
			d.endpoint, d.attempts, d.last_error)
	     FROM notification_outbox o JOIN notification_delivery d ON d.outbox_id = o.id
	    WHERE o.event_id = '$eid'"
}
row_before=$(event_row)
applied_before=$(q "SELECT applied_at FROM notification_schema_version WHERE version = 1")
shape_before=$(fingerprint public)

for round in second third; do
	out=$(apply_all)
	rc=$?
	check_eq "the migrations apply a $round time (exit status)" "0" "$rc"
	check_eq "applying a $round time prints nothing" "" "$out"
	check_eq "after the $round application the data inserted before is intact" "$row_before" \
		"$(event_row)"
	check_eq "after the $round application the schema version is still 1" "1" \
		"$(q "SELECT string_agg(version::text, ',' ORDER BY version) FROM notification_schema_version")"
	check_eq "after the $round application the version keeps its applied_at" "$applied_before" \
		"$(q "SELECT applied_at FROM notification_schema_version WHERE version = 1")"
	check_eq "after the $round application the schema and its grants are unchanged" \
		"$shape_before" "$(fingerprint public)"
done
eid2=$(q "SELECT notification_publish('test.after', NULL)")
check_eq "after re-application new events get a larger id" "t" \
	"$(q "SELECT (SELECT id FROM notification_outbox WHERE event_id = '$eid2')
		     > (SELECT id FROM notification_outbox WHERE event_id = '$eid')")"

# What a 002 migration will do: require version 1, then record its own. The
# files applied again in order (001 first) must keep it.
out=$(q "DO \$\$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM notification_schema_version WHERE version = 1) THEN
			RAISE EXCEPTION 'apply sql/001_schema.sql first';
		END IF;
	  END \$\$;
	  INSERT INTO notification_schema_version (version) VALUES (2) ON CONFLICT DO NOTHING")
check_eq "a later migration finds version 1 and records its own" "" "$out"
out=$(apply_all)
check_eq "001 applies again after it" "" "$out"
check_eq "... and keeps the later version" "1,2" \
	"$(q "SELECT string_agg(version::text, ',' ORDER BY version) FROM notification_schema_version")"
q "DELETE FROM notification_schema_version WHERE version = 2" >/dev/null

echo "# 2. over s3-orchestrator's own notification_outbox"

q "CREATE SCHEMA legacy" >/dev/null
out=$(PGOPTIONS='-c search_path=legacy' q "$legacy_table")
check_eq "the legacy outbox is created in schema legacy" "" "$out"
legacy_objects=$(objects legacy)
legacy_shape=$(fingerprint legacy)

out=$(PGOPTIONS='-c search_path=legacy' apply_all)
rc=$?
check_eq "the migration fails over the legacy table (non-zero exit)" "1" \
	"$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
check_contains "the error names notification_outbox" "notification_outbox" "$out"
check_contains "the error names the schema" "schema legacy" "$out"
check_contains "the error says to drain it" "drain" "$out"
check_contains "the error says to drop it" "drop" "$out"
check_contains "the error says to rename it" "rename" "$out"
check_eq "the legacy row is untouched" "$legacy_expected" \
	"$(q "$legacy_row FROM legacy.notification_outbox")"
check_eq "the legacy table keeps its shape" "$legacy_shape" "$(fingerprint legacy)"
check_eq "nothing was created in schema legacy" "$legacy_objects" "$(objects legacy)"

# The lookup must be confined to the schema the migration creates in: a legacy
# table later in the search_path does not block a new schema, and an s3o-notify
# schema later in the search_path does not hide a legacy table in the target.
q "CREATE SCHEMA s3o_side" >/dev/null
out=$(PGOPTIONS='-c search_path=s3o_side,legacy' apply_all)
check_eq "a legacy outbox later in the search_path does not block a new schema" "" "$out"
check_eq "the migration created its tables in the first schema" "1" \
	"$(q "SELECT string_agg(version::text, ',' ORDER BY version) FROM s3o_side.notification_schema_version")"
check_eq "... and left the legacy row alone" "$legacy_expected" \
	"$(q "$legacy_row FROM legacy.notification_outbox")"
out=$(PGOPTIONS='-c search_path=legacy,s3o_side' apply_all)
rc=$?
check_eq "an s3o-notify schema later in the search_path does not hide the legacy table" "1" \
	"$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
check_contains "... and the error is the clear one" "rename" "$out"
check_eq "... and nothing was created in schema legacy" "$legacy_objects" "$(objects legacy)"

out=$(PGOPTIONS='-c search_path=legacy' \
	q "ALTER TABLE notification_outbox RENAME TO notification_outbox_old")
check_eq "the legacy table can be renamed" "" "$out"
out=$(PGOPTIONS='-c search_path=legacy' apply_all)
rc=$?
check_eq "after the rename the migration applies (exit status)" "0" "$rc"
check_eq "after the rename the migration prints nothing" "" "$out"
check_eq "schema legacy now records version 1" "1" \
	"$(q "SELECT string_agg(version::text, ',' ORDER BY version) FROM legacy.notification_schema_version")"
check_eq "the renamed legacy table still holds its row" "$legacy_expected" \
	"$(q "$legacy_row FROM legacy.notification_outbox_old")"
eid3=$(PGOPTIONS='-c search_path=legacy' \
	q "SELECT notification_publish('s3:ObjectCreated:Put', 'k')")
check_eq "the new outbox in schema legacy works" "s3:ObjectCreated:Put" \
	"$(q "SELECT event_type FROM legacy.notification_outbox WHERE event_id = '$eid3'")"
check_eq "the public schema was not touched by all this" "$shape_before" "$(fingerprint public)"

echo "# 3. without superuser"

q "CREATE ROLE $user_role LOGIN PASSWORD '$user_pw' NOSUPERUSER NOCREATEDB NOCREATEROLE
   NOINHERIT" >/dev/null
q "CREATE SCHEMA mig_owned AUTHORIZATION $user_role" >/dev/null
# Connect as the role itself when the server lets it log in with its password
# (pg_virtualenv: password authentication on localhost); otherwise take the
# role with SET ROLE in the same session, which drops superuser as well.
as_role()
{
	PGUSER=$user_role PGPASSWORD=$user_pw PGOPTIONS='-c search_path=mig_owned' "$@"
}
if as_role psql -X -q -A -t -c "SELECT 1" >/dev/null 2>&1; then
	echo "# connecting as $user_role"
	whoami=$(as_role psql -X -q -A -t -c "SELECT current_user || ' ' || usesuper
		FROM pg_user WHERE usename = current_user" 2>&1)
	role_psql()
	{
		as_role psql -X -q -v ON_ERROR_STOP=1 "$@"
	}
else
	echo "# $user_role cannot log in here: using SET ROLE"
	whoami=$(PGOPTIONS='-c search_path=mig_owned' psql -X -q -A -t -c "SET ROLE $user_role" \
		-c "SELECT current_user || ' ' || usesuper FROM pg_user
		     WHERE usename = current_user" 2>&1)
	role_psql()
	{
		PGOPTIONS='-c search_path=mig_owned' psql -X -q -v ON_ERROR_STOP=1 \
			-c "SET ROLE $user_role" "$@"
	}
fi
check_eq "the migration runs as a plain role" "$user_role false" "$whoami"
apply_as_role()
{
	for f in "$sql_dir"/[0-9][0-9][0-9]_*.sql; do
		role_psql -f "$f" 2>&1 || return 1
	done
}
for round in first second; do
	out=$(apply_as_role)
	rc=$?
	check_eq "a plain role owning the schema applies the migration a $round time" "0" "$rc"
	check_eq "... printing nothing" "" "$out"
done
owned="notification_delivery=$user_role"
owned="$owned notification_outbox=$user_role"
owned="$owned notification_schema_version=$user_role"
check_eq "the tables belong to the plain role" "$owned" \
	"$(q "SELECT string_agg(relname || '=' || relowner::regrole, ' ' ORDER BY relname)
		FROM pg_class WHERE relnamespace = 'mig_owned'::regnamespace AND relkind = 'r'")"
check_eq "schema mig_owned records version 1" "1" \
	"$(q "SELECT string_agg(version::text, ',' ORDER BY version) FROM mig_owned.notification_schema_version")"
eid4=$(role_psql -A -t -c "SELECT notification_publish('service.started', NULL)" 2>&1)
check_eq "the plain role can publish into its outbox" "service.started" \
	"$(role_psql -A -t -c "SELECT event_type FROM notification_outbox WHERE event_id = '$eid4'" 2>&1)"

echo "# 4. one transaction"

# A function of the same name and another return type makes the migration
# fail near its end, after every table: none of them may remain.
q "CREATE SCHEMA mig_tx;
   CREATE FUNCTION mig_tx.notification_publish(text, text, jsonb) RETURNS integer
   LANGUAGE sql AS 'SELECT 1'" >/dev/null
out=$(PGOPTIONS='-c search_path=mig_tx' apply_all)
rc=$?
check_eq "the migration fails on the conflicting function (non-zero exit)" "1" \
	"$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
check_contains "... with PostgreSQL's error" "cannot change return type" "$out"
check_eq "... and leaves nothing of itself behind" "notification_publish()" "$(objects mig_tx)"

echo "# 5. sql/roles.example.sql"

# apply_roles: as docker/compose.yaml runs it, with role names of our own.
apply_roles()
{
	psql -X -q -1 -v ON_ERROR_STOP=1 -v password="$user_pw" \
		-v dispatcher="$roles_dispatcher" -v producer="$roles_producer" \
		-f "$sql_dir/roles.example.sql" 2>&1
}
for round in first second; do
	out=$(apply_roles)
	rc=$?
	check_eq "roles.example.sql applies a $round time (exit status)" "0" "$rc"
	check_eq "... printing nothing" "" "$out"
done
check_eq "the dispatcher role can log in, with the password given" "true true" \
	"$(q "SELECT rolcanlogin || ' ' || (rolpassword IS NOT NULL) FROM pg_authid
	       WHERE rolname = '$roles_dispatcher'")"
check_eq "the producer role it created cannot log in" "f" \
	"$(q "SELECT rolcanlogin FROM pg_roles WHERE rolname = '$roles_producer'")"
check_eq "as the dispatcher: the schema version" "1" \
	"$(psql -X -q -A -t -c "SET ROLE $roles_dispatcher" \
		-c "SELECT max(version) FROM notification_schema_version" 2>&1)"
check_contains "as the dispatcher: no INSERT into the outbox (a producer's right)" \
	"permission denied for table notification_outbox" \
	"$(psql -X -q -A -t -c "SET ROLE $roles_dispatcher" \
		-c "INSERT INTO notification_outbox (event_type) VALUES ('t')" 2>&1)"
check_eq "as the producer: notification_publish" "1" \
	"$(psql -X -q -A -t -c "SET ROLE $roles_producer" \
		-c "SELECT count(*) FROM (SELECT notification_publish('test.roles', NULL)) s" 2>&1)"

echo "1..$checks"
if [ "$failures" -ne 0 ]; then
	echo "# $failures of $checks checks failed"
	exit 1
fi
echo "# all $checks checks passed"
