/* dispatcher_int.h: the dispatcher's shared state, private to
 * lib/dispatcher*.c (as pgqd keeps its own in pgqd.h). dispatcher.c holds
 * the overview, the scheduler and the lifecycle; dispatcher_claim.c claims
 * and paces; dispatcher_post.c fans events out and POSTs them;
 * dispatcher_settle.c records outcomes and times retries;
 * dispatcher_lease.c renews leases; dispatcher_conn.c reacts to the
 * database connections; dispatcher_metrics.c refreshes and prints metrics.
 * A struct dispatcher owns its endpoints, jobs and deliveries. */
#ifndef S3O_DISPATCHER_INT_H
#define S3O_DISPATCHER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "clock.h"
#include "dispatcher.h"
#include "http.h"
#include "metrics.h"
#include "pace.h"
#include "pgconn.h"
#include "sign.h"
#include "store.h"

#define DISPATCHER_SETTLE_WAIT_MS 5000 /* at shutdown, after the deliveries */
#define DISPATCHER_RETRY_SLACK_MS 10   /* so a retry is due in the database when we claim it */
#define DISPATCHER_STATS_MS	  1000 /* refresh of the database-wide gauges */
#define DISPATCHER_BUSY_TRY_MS	  20   /* after a failed attempt at the busy lock */
#define DISPATCHER_LAST_CLAIM_MS  100  /* after releasing it: covers producers' commit delay */

enum wakeup { WAKE_NOTIFY, WAKE_SWEEP, WAKE_RECONNECT, WAKE_RETRY, WAKE_COUNT };

enum delivery_state {
	DEL_QUEUED,   /* waiting for one of its endpoint's slots */
	DEL_RUNNING,  /* POST in flight */
	DEL_OK,	      /* 2xx */
	DEL_FAILED,   /* to retry after delay_ms */
	DEL_DROPPED,  /* retries exhausted */
	DEL_HANDBACK, /* not attempted now: queued in the database, due at once */
};

struct delivery {
	struct delivery *next; /* in its endpoint's queue */
	struct job *job;
	struct endpoint *ep;
	enum delivery_state state;
	int attempts;	 /* attempts made, this one included once it ran */
	bool holds_slot; /* POSTed: counts as unsettled from its job's end to settlement */
	uint64_t delay_ms;
	uint64_t deadline_ms; /* monotonic: when its POST times out */
	char *error;
};

/* One claimed row in memory: a new event with a delivery per matching
 * endpoint, or one due retry with a single delivery. */
struct job {
	struct job *prev, *next;
	int64_t id;
	char token[40];
	bool retry;
	int64_t created_us; /* commit-to-delivery lag starts here */
	uint64_t leased_ms; /* monotonic: when the claim or renewal that set its lease was sent */
	bool renewing;	    /* in the lease renewal being sent */
	bool lost;	    /* a renewal found its row claimed by someone else */
	char *event_id;
	char *type;
	char *body;
	size_t len;
	unsigned ndel, pending;
	struct delivery del[];
};

struct endpoint {
	struct dispatcher *d;
	const struct endpoint_config *cfg;
	struct http_target *target; /* its URL and fixed headers, for http_post() */
	struct signer *signer;	    /* NULL when the endpoint has no secret */
	unsigned cap;		    /* POSTs at once: its share of max_in_flight */
	/* POSTs running, outcomes waiting for their settlement (once their job
	 * is finished) and queued deliveries: together at most 2 * cap, which
	 * also bounds what a crash repeats of single-endpoint events. A POST's
	 * slot is free as soon as it ends: waiting for the settlement's commit
	 * as well left slots idle between rounds. */
	unsigned in_flight, unsettled, queued;
	struct delivery *q_head, *q_tail;
	bool backlog;		       /* due rows of its own may be waiting in the database */
	unsigned retry_req, retry_got; /* rows asked for and received in a retry claim */
	unsigned share;		       /* its deliveries from the last claim of new events */
	uint64_t delivered, failed, dropped;
	struct histogram duration;
};

struct dispatcher {
	struct event_base *base;
	const struct config *cfg;
	struct endpoint *eps;
	size_t neps;
	const char **ep_names;
	/* Claims and the rest on work; settlements on their own connection, so
	 * a delivered job's slot does not wait behind a claim (and the two run
	 * on two backends at once); LISTEN and the busy lock on listen. */
	struct pgconn *work, *settle, *listen;
	/* listen_url is set apart from url, which is then taken for a
	 * transaction pooler: no session state (settings, prepared statements)
	 * on work and settle, which would stay on a server session that other
	 * clients' transactions use next. */
	bool pooled;
	struct http *http;
	struct event *sweep_timer, *retry_timer, *shutdown_timer, *kick_ev, *claim_timer;
	struct event *renew_timer, *settle_timer;
	struct store_batch *renewal; /* the lease renewal being sent, if any */
	uint64_t renewal_sent_ms;
	uint64_t retry_deadline; /* monotonic ms of the armed retry timer, 0 = none */

	bool schema_ok, started, listening;
	bool want_new, want_retry, claiming, prefer_retry;
	/* Claims of new events start after this id while they come back full
	 * (0: from the start); claim_want is what the running claim asked for. */
	int64_t claim_after;
	unsigned claim_want;
	/* Monotonic: when the running claim was sent. The database counts its
	 * leases from a moment no earlier: from the answer, a claim that waited
	 * (a lock, a busy server) would seem to hold its rows longer than it does. */
	uint64_t claim_sent_ms;
	/* Rows of the last claim of new events that had any (endpoint share). */
	unsigned share_rows;
	bool busy;   /* draining: claims come back full, or rows come in under load */
	bool loaded; /* the last claim saw rows come in at PACE_MIN_RATE or more */
	bool pacing; /* and was not full: the next one waits (settlements too) */
	/* The busy lock (docs/design.md), held on the listen connection while busy:
	 * producers then skip pg_notify(). */
	enum { LOCK_NONE, LOCK_TAKING, LOCK_HELD } busy_lock;
	uint64_t busy_try_at; /* no attempt at the lock before (monotonic ms), after a failed one */
	uint64_t notifies, claim_notifies; /* NOTIFYs received; as of the running claim */
	uint64_t claim_start_us, prev_claim_start_us; /* monotonic; of the last two claims */
	bool stopping, abandoned, drained;
	int exit_code;

	struct job *jobs;
	unsigned njobs;
	/* Finished jobs whose outcomes are in pending, and in inflight: their
	 * leases are renewed until the settlement commits, or a slow one would
	 * let another claim take a delivered row and send it again. */
	struct job *settling, *settling_sent;
	struct store_batch *pending, *inflight;
	unsigned *pending_slots, *inflight_slots; /* per endpoint, freed when settled */
	unsigned pending_jobs;			  /* outcomes in pending */
	uint64_t pending_since_us;		  /* monotonic time of the first of them */
	bool inflight_sent;

	uint64_t unmatched;
	uint32_t rng;

	/* metrics */
	struct event *stats_timer;
	struct histogram lag;
	uint64_t wakeups[WAKE_COUNT];
	bool stats_running, stats_valid;
	struct store_stats stats;
};

static inline void timer_ms(struct event *ev, uint64_t ms)
{
	struct timeval tv = clock_tv_ms(ms);
	evtimer_add(ev, &tv);
}

/* dispatcher.c: the scheduler */
/* Run the scheduler once on the next loop turn, however often it is asked. */
void dispatcher_kick(struct dispatcher *d);
/* Leave the loop once a shutdown has nothing left to settle. */
void dispatcher_check_drained(struct dispatcher *d);

/* dispatcher_claim.c: claims and pacing */
bool claim_new(struct dispatcher *d);
bool claim_retries(struct dispatcher *d);
bool retry_wanted(const struct dispatcher *d);
void claim_timer_cb(evutil_socket_t fd, short what, void *arg);
/* The busy lock (docs/design.md) while draining; released when idle. */
void mark_busy(struct dispatcher *d);
void mark_idle(struct dispatcher *d);

/* dispatcher_post.c: endpoints, jobs, fan-out and POSTs */
int endpoint_init(struct dispatcher *d, struct endpoint *ep, const struct endpoint_config *cfg)
    __attribute__((warn_unused_result));
void endpoint_release(struct endpoint *ep);
/* Build a job from a claimed row (retry_ep: a due retry for that endpoint). */
void job_from_row(struct dispatcher *d, const struct store_row *row, struct endpoint *retry_ep);
void job_unlink(struct dispatcher *d, struct job *j);
void job_free(struct job *j);
/* Free a list of finished jobs (linked by next). */
void job_free_list(struct job *j);
/* A delivery has its outcome: finish the job once it was the last. */
void delivery_done(struct dispatcher *d, struct delivery *dl);
/* Start queued deliveries while the endpoint has free slots. */
void endpoint_pump(struct endpoint *ep);
/* Deliveries the endpoint may still take into memory. */
unsigned endpoint_room(const struct endpoint *ep);

/* dispatcher_settle.c: outcomes, settlement and retry timing */
void job_finish(struct dispatcher *d, struct job *j);
void settle_flush(struct dispatcher *d);
void next_due_cb(const struct store_result *r, bool pending, uint64_t ms, void *arg);
void settle_timer_cb(evutil_socket_t fd, short what, void *arg);
void retry_timer_cb(evutil_socket_t fd, short what, void *arg);

/* dispatcher_lease.c */
void renew_cb(evutil_socket_t fd, short what, void *arg);

/* dispatcher_conn.c: the three connections' callbacks */
void work_up_cb(void *arg);
void work_down_cb(void *arg);
void settle_up_cb(void *arg);
void listen_up_cb(void *arg);
void listen_down_cb(void *arg);
void notify_cb(const char *channel, void *arg);

/* dispatcher_metrics.c */
int dispatcher_histograms_init(struct dispatcher *d) __attribute__((warn_unused_result));
void stats_cb(evutil_socket_t fd, short what, void *arg);

#endif
