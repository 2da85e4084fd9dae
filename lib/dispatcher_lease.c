/* dispatcher_lease: work can wait in memory for its endpoint's slots, its
 * POST and its settlement; the leases of what is still held are renewed
 * before they expire, and a row found claimed by another is marked lost. */
#include "dispatcher_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The jobs whose leases are renewed: those at work, and the finished ones
 * until their settlement commits. */
static void held_lists(struct dispatcher *d, struct job **lists[3])
{
	lists[0] = &d->jobs;
	lists[1] = &d->settling;
	lists[2] = &d->settling_sent;
}

static bool job_posted(const struct job *j)
{
	for (unsigned i = 0; i < j->ndel; i++)
		if (j->del[i].holds_slot || j->del[i].state == DEL_RUNNING)
			return true;
	return false;
}

static void renew_result_cb(const struct store_result *r, const struct store_renewed *rows,
			    size_t n, void *arg)
{
	struct dispatcher *d = arg;
	struct job **lists[3];
	held_lists(d, lists);
	bool ok = r->status == STORE_OK;
	if (!ok)
		log_warn("lease renewal failed: %s",
			 r->status == STORE_ERROR ? r->error : "connection lost");
	for (size_t i = 0; i < n; i++) {
		int64_t id = rows[i].id;
		const char *ep = rows[i].endpoint;
		bool found = false;
		for (int l = 0; l < 3 && !found; l++) {
			for (struct job *j = *lists[l]; j; j = j->next) {
				if (j->renewing && j->id == id && j->retry == (ep != NULL) &&
				    (!ep || strcmp(ep, j->del[0].ep->cfg->name) == 0)) {
					/* From when it was sent: the database set it later. */
					j->leased_ms = d->renewal_sent_ms;
					j->renewing = false;
					found = true;
					break;
				}
			}
		}
	}
	/* Rows a successful renewal did not return are no longer ours: settled
	 * meanwhile, or claimed by someone else once the lease had run out. */
	for (int l = 0; l < 3; l++) {
		for (struct job *j = *lists[l]; j; j = j->next) {
			if (j->renewing && ok && !j->lost) {
				j->lost = true;
				/* One whose settlement was sent may just have been settled. */
				if (job_posted(j) && l < 2)
					log_warn("the lease of event %s ran out after its POST: "
						 "another claim may deliver it again",
						 j->event_id);
			}
			j->renewing = false;
		}
	}
	store_batch_free(d->renewal);
	d->renewal = NULL;
}

/* Work can wait in memory for its endpoint's slots, then for its POST and
 * its settlement: keep the leases of everything still held from expiring,
 * or another claim (ours too) would take the rows and send them again. */
void renew_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	if (d->renewal || !pgconn_is_up(d->work))
		return;
	uint64_t now = clock_mono_ms();
	struct store_batch *b = NULL;
	struct job **lists[3];
	held_lists(d, lists);
	for (int l = 0; l < 3; l++) {
		for (struct job *j = *lists[l]; j; j = j->next) {
			if (j->lost || now - j->leased_ms < d->cfg->lease_ms / 2)
				continue;
			if (!b && !(b = store_batch_new()))
				return;
			if (j->retry)
				store_batch_renew_retry(b, j->id, j->del[0].ep->cfg->name,
							j->token);
			else
				store_batch_renew_new(b, j->id, j->token);
			j->renewing = true;
		}
	}
	if (!b)
		return;
	d->renewal = b;
	d->renewal_sent_ms = now;
	if (store_renew(d->work, b, d->cfg->lease_ms, renew_result_cb, d) != 0)
		renew_result_cb(&(struct store_result){STORE_LOST, NULL}, NULL, 0, d);
}
