#!/bin/sh
# docker/compose.yaml for real: build the image (docker build --network host,
# tagged s3o-notify:local as compose.yaml names it), bring the project up with
# --no-build under a project name of its own, and check that the database gets
# healthy, the migrations are applied, an event published with
# notification_publish reaches the demo receiver with a valid signature and is
# counted on /metrics, s3o-notifyd rides out a restart of the database
# container without being restarted itself, and `down -v` leaves no container,
# volume or network of the project behind. Without a Docker engine it exits 77
# (skipped); .ci/run brings one up with ../shared/tools/docker-offline/up when
# that exists.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/testlib.sh"

# Some checks poll: SECONDS bounds each wait (longer on a loaded machine).
wait_s="${S3O_COMPOSE_WAIT:-120}"

if ! command -v docker >/dev/null 2>&1; then
	echo "skipped: docker is not installed"
	exit 77
fi
if ! why=$(docker info 2>&1 >/dev/null); then
	echo "skipped: no Docker engine answers (docker info: $(echo "$why" | tail -n 1))"
	exit 77
fi
if docker compose version >/dev/null 2>&1; then
	set -- docker compose
elif command -v docker-compose >/dev/null 2>&1; then
	set -- docker-compose
else
	echo "skipped: neither docker compose nor docker-compose is installed"
	exit 77
fi
echo "using $* ($("$@" version 2>/dev/null | head -n 1)), $(docker version --format 'engine {{.Server.Version}}')"

tmp=$(mktemp -d) || exit 1
# Lower case, digits and dashes: a valid project name in compose v1 and v2.
project="s3o-compose-test-$$-$(date +%s)"
image=s3o-notify:local
up=false

unset POSTGRES_PASSWORD S3O_DB_PASSWORD
HOOK_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
S3O_ADMIN_PORT=0 # any free port; asked back with `port`
export HOOK_SECRET S3O_ADMIN_PORT

# compose ARGS...: the project's compose command. The project directory of
# its own keeps a stray .env out.
compose_cmd="$*"
compose() {
	$compose_cmd -p "$project" --project-directory "$root/docker" \
		-f "$root/docker/compose.yaml" "$@"
}

# The container of SERVICE in our project (stopped ones too), by label: the
# same in compose v1 and v2.
container() {
	docker ps -aq --filter "label=com.docker.compose.project=$project" \
		--filter "label=com.docker.compose.service=$1" | head -n 1
}
state() { # state SERVICE GO-TEMPLATE
	c=$(container "$1")
	[ -n "$c" ] && docker inspect -f "$2" "$c" 2>/dev/null
}
health() { state "$1" '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}'; }

cleanup() {
	rc=$?
	if $up; then
		if [ "$failures" -gt 0 ] || [ "$rc" -ne 0 ]; then
			echo "== compose logs"
			compose logs --no-color --timestamps 2>&1 | tail -n 300
			echo "== compose ps"
			compose ps 2>&1
		fi
		compose down -v --remove-orphans >/dev/null 2>&1
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# poll SECONDS COMMAND...: until COMMAND succeeds or SECONDS pass.
poll() {
	deadline=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 1
	done
}

# A run that ctest killed on its timeout (SIGKILL: no trap runs) leaves its
# project up; take down those whose test process is gone.
docker ps -a --filter label=com.docker.compose.project \
	--format '{{.Label "com.docker.compose.project"}}' 2>/dev/null |
	grep '^s3o-compose-test-[0-9]*-[0-9]*$' | sort -u | while read -r stale; do
	pid=${stale#s3o-compose-test-}
	pid=${pid%%-*}
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "taking down $stale, left by an earlier run"
		$compose_cmd -p "$stale" --project-directory "$root/docker" \
			-f "$root/docker/compose.yaml" down -v --remove-orphans >/dev/null 2>&1
	fi
done

# ---- the image ------------------------------------------------------------------------------

t0=$(date +%s)
if docker build --network host -f "$root/docker/Dockerfile" -t "$image" "$root" \
	>"$tmp/build" 2>&1; then
	pass "docker build --network host -t $image ($(($(date +%s) - t0)) s)"
else
	fail "docker build --network host -t $image" "$(tail -n 40 "$tmp/build")"
	finish
	exit 1
fi
# Earlier builds from other sources leave images dangling: each earlier
# s3o-notify:local and, with the classic builder, each build stage (close to
# 1 GB with the vfs storage driver). Remove them, but for the newest build
# stage, the next build's cache; removing one drops only its own layers.
docker images -q -f dangling=true 2>/dev/null | while read -r id; do
	created=$(docker image inspect -f '{{.Created}}' "$id" 2>/dev/null) || continue
	case $(docker image inspect -f '{{json .Config.Entrypoint}}' "$id" 2>/dev/null) in
	'["s3o-notifyd","-c","/etc/s3o-notify/s3o-notify.ini"]')
		echo "final $created $id"
		continue
		;;
	esac
	case $(docker image inspect -f '{{.ContainerConfig.Cmd}}' "$id" 2>/dev/null) in
	*"--target s3o-notifyd s3o-notify"*) echo "stage $created $id" ;;
	esac
done | sort >"$tmp/dangling"
{
	grep '^final ' "$tmp/dangling"
	grep '^stage ' "$tmp/dangling" | sed '$d'
} | while read -r _ _ id; do
	docker image rm "$id" >/dev/null 2>&1 || true
done
echo "image $image: $(docker image inspect -f '{{.Size}}' "$image") bytes"

# ---- up -------------------------------------------------------------------------------------

up=true
# up -d returns once migrate has completed (s3o-notifyd depends on it).
if compose up -d --no-build >"$tmp/up" 2>&1; then
	pass "compose up -d --no-build"
else
	fail "compose up -d --no-build" "$(cat "$tmp/up")"
	finish
	exit 1
fi

db_healthy() { [ "$(health db)" = healthy ]; }
if poll "$wait_s" db_healthy; then
	pass "db is healthy"
else
	fail "db is healthy" "health: $(health db)"
fi

# A probe of the Unix socket passes while the entrypoint's init-time server
# runs, before db:5432 listens: the health check must go through TCP.
case $(state db '{{json .Config.Healthcheck.Test}}') in
*"pg_isready -h 127.0.0.1 "*) pass "db health check probes 127.0.0.1 (TCP)" ;;
*) fail "db health check probes 127.0.0.1 (TCP)" "$(state db '{{json .Config.Healthcheck.Test}}')" ;;
esac

migrate_done() { [ "$(state migrate '{{.State.Status}}')" = exited ]; }
if poll "$wait_s" migrate_done &&
	[ "$(state migrate '{{.State.ExitCode}}')" = 0 ]; then
	pass "migrate exited 0"
else
	fail "migrate exited 0" "state: $(state migrate '{{.State.Status}} exit {{.State.ExitCode}}')"
fi

psql() {
	compose exec -T db psql -U postgres -d s3o -qtAX -v ON_ERROR_STOP=1 -c "$1"
}
want_version=$(ls "$root"/sql/[0-9][0-9][0-9]_*.sql | sed -n '$s|.*/0*\([0-9][0-9]*\)_[^/]*$|\1|p')
got_version=$(psql "SELECT max(version) FROM notification_schema_version" 2>&1)
if [ "$got_version" = "$want_version" ]; then
	pass "schema version $got_version applied"
else
	fail "schema version $want_version applied" "got: $got_version"
fi
if [ "$(psql "SELECT rolname FROM pg_roles WHERE rolname = 's3o_notify'" 2>&1)" = s3o_notify ]; then
	pass "roles.example.sql created s3o_notify"
else
	fail "roles.example.sql created s3o_notify"
fi

port=$(compose port s3o-notifyd 9464 2>/dev/null | sed -n 's/.*:\([0-9][0-9]*\)$/\1/p' | head -n 1)
if [ -n "$port" ]; then
	pass "admin port published on 127.0.0.1:$port"
else
	fail "admin port published" "$(compose port s3o-notifyd 9464 2>&1)"
	port=9464
fi
admin="http://127.0.0.1:$port"
ready() { curl -fsS -o /dev/null --max-time 5 "$admin/readyz" 2>/dev/null; }
if poll "$wait_s" ready; then
	pass "s3o-notifyd /readyz answers 200"
else
	fail "s3o-notifyd /readyz answers 200" "$(curl -sS --max-time 5 "$admin/readyz" 2>&1)"
fi
# The image's HEALTHCHECK (s3o-notify healthcheck, every 15 s).
notifyd_healthy() { [ "$(health s3o-notifyd)" = healthy ]; }
if poll "$wait_s" notifyd_healthy; then
	pass "s3o-notifyd container is healthy (the image's HEALTHCHECK)"
else
	fail "s3o-notifyd container is healthy (the image's HEALTHCHECK)" \
		"health: $(health s3o-notifyd)"
fi

# ---- deliveries -----------------------------------------------------------------------------

# metric NAME: its value for endpoint "demo" (empty when absent).
metric() {
	curl -fsS --max-time 5 "$admin/metrics" 2>/dev/null |
		awk -v m="$1" '$1 == m "{endpoint=\"demo\"}" { print $2 }'
}
# received ID: the receiver logged ID with a good signature, answering 200.
received() {
	compose logs --no-color receiver 2>/dev/null | grep -F "id=$1 " |
		grep -q " sig=ok status=200"
}
# deliver N SUBJECT: publish an event, wait for it at the receiver and for
# delivered_total to reach N.
deliver() {
	id=$(psql "SELECT notification_publish('s3:ObjectCreated:Put', '$2', '{\"bucket\":\"photos\"}')" 2>&1)
	case $id in
	????????-????-????-????-????????????) pass "notification_publish ($2) returned $id" ;;
	*)
		fail "notification_publish ($2)" "$id"
		return
		;;
	esac
	if poll "$wait_s" received "$id"; then
		pass "the receiver got $id with sig=ok"
	else
		fail "the receiver got $id with sig=ok" \
			"$(compose logs --no-color receiver 2>&1 | tail -n 5)"
	fi
	counted() { [ "$(metric s3o_notifications_delivered_total)" = "$1" ]; }
	if poll 30 counted "$1"; then
		pass "/metrics: s3o_notifications_delivered_total{endpoint=\"demo\"} $1"
	else
		fail "/metrics: s3o_notifications_delivered_total{endpoint=\"demo\"} $1" \
			"got: $(metric s3o_notifications_delivered_total)"
	fi
}

deliver 1 photos/a.jpg

# ---- the database restarts ------------------------------------------------------------------

started=$(state s3o-notifyd '{{.State.StartedAt}} restarts={{.RestartCount}}')
if compose restart db >"$tmp/restart" 2>&1; then
	pass "compose restart db"
else
	fail "compose restart db" "$(cat "$tmp/restart")"
fi
if poll "$wait_s" db_healthy; then
	pass "db is healthy again"
else
	fail "db is healthy again" "health: $(health db)"
fi
deliver 2 photos/b.jpg
# The daemon reconnects by itself (docs/operating.md): compose's restart
# policy must not have had to start it again.
after=$(state s3o-notifyd '{{.State.StartedAt}} restarts={{.RestartCount}}')
if [ "$(state s3o-notifyd '{{.State.Status}}')" = running ] && [ "$after" = "$started" ]; then
	pass "s3o-notifyd kept running through the restart ($after)"
else
	fail "s3o-notifyd kept running through the restart" "before: $started" "after: $after"
fi
if compose logs --no-color s3o-notifyd 2>/dev/null | grep -q 'database connection [a-z]* down'; then
	pass "s3o-notifyd logged the lost connection"
else
	fail "s3o-notifyd logged the lost connection" \
		"$(compose logs --no-color s3o-notifyd 2>&1 | tail -n 10)"
fi

# ---- down -v --------------------------------------------------------------------------------

if [ "$failures" -gt 0 ]; then
	echo "== compose logs"
	compose logs --no-color --timestamps 2>&1 | tail -n 300
fi
if compose down -v --remove-orphans >"$tmp/down" 2>&1; then
	pass "compose down -v"
else
	fail "compose down -v" "$(cat "$tmp/down")"
fi
up=false
for kind in container volume network; do
	case $kind in
	container) left=$(docker ps -aq --filter "label=com.docker.compose.project=$project") ;;
	volume) left=$(docker volume ls -q --filter "label=com.docker.compose.project=$project") ;;
	network) left=$(docker network ls -q --filter "label=com.docker.compose.project=$project") ;;
	esac
	# By name too: a volume or network compose made carries the project's prefix.
	case $kind in
	volume) left="$left$(docker volume ls -q | grep -F "${project}_")" ;;
	network) left="$left$(docker network ls --format '{{.Name}}' | grep -F "${project}_")" ;;
	esac
	if [ -z "$left" ]; then
		pass "no $kind of the project is left"
	else
		fail "no $kind of the project is left" "$left"
	fi
done

finish
