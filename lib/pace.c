#include "pace.h"

struct pace pace_after_claim(unsigned rows, unsigned asked, uint64_t span_us, bool was_loaded)
{
	struct pace p;
	bool full = rows >= asked;
	p.loaded = rows >= 2 && (uint64_t)rows * 1000000 >= (uint64_t)PACE_MIN_RATE * span_us;
	p.busy = full || (p.loaded && was_loaded);
	p.claim_now = full || !p.loaded;
	p.wait = !p.claim_now;
	return p;
}

uint64_t pace_settle_wait_us(bool paced, unsigned jobs, uint64_t since_us, uint64_t now_us)
{
	uint64_t due = since_us + PACE_MS * 1000;
	if (!paced || jobs >= PACE_SETTLE_MIN_JOBS || now_us >= due)
		return 0;
	return due - now_us;
}
