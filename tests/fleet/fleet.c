/*
 * fleet.c - a fleet of telespool uploaders against one LangBot Space, in
 * simulated time: steady state, a Space outage, and the recovery.
 *
 * Every instance runs the uploader's own policy code, linked from
 * telespool_upload_core: the concurrency controller (concurrency.c: one per
 * run, fed every simulated answer), the per-event verdicts of a batch
 * (tsu_judge: classification, backoff with full jitter, Retry-After parsed
 * from the header text Space sends, the attempt and age limits), the
 * run-wide "Space is down" backoff (tsu_backoff_ms), what each answer
 * means for the limit (tsu_cc_signal_of), catch-up pacing
 * (tsu_catchup_cutoff_ms).  What is left of drain.c, a run's order (the
 * batch sizes, first-batch probe, in-run Retry-After pause and server-down
 * rule), the handlers below follow by hand: drain.c itself talks to SQLite
 * and libcurl.  Runs start every --period seconds plus a random
 * splay of up to --splay seconds (telespool-upload --splay).
 *
 * Space: serves --capacity requests per second (default 3 x the fleet's
 * steady-state rate) in arrival order; a request that would queue for more
 * than a second is answered at once with 429 and "Retry-After: 1"; during
 * the outage every request fails to connect.  Answers take --rtt ms plus
 * the time queued.
 *
 * Each instance records at its own rate (log-normal: most instances are
 * small, a few are busy); the spool is a FIFO of the events of each minute
 * plus the rows waiting for a retry.
 *
 * Output: a table on stdout and, with --csv FILE, one row per minute
 * (requests Space saw, accepted, 429, failed, backlog, instances behind).
 * Exit 1 when an invariant breaks (an event lost or sent twice, a request
 * during a run-wide wait).
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "concurrency.h"
#include "options.h"
#include "policy.h"

#define US           1000000LL
#define PI           3.14159265358979323846
#define EPOCH_MS     1767225600000LL /* the simulation's t = 0: 2026-01-01 */
#define PAUSE_MAX_MS (60LL * 1000)   /* drain.c */
#define MAX_SECONDS  300             /* drain.c's default run length */

struct opts {
	int instances;
	double hours_before, outage_hours, hours_after;
	double period_s, splay_s, rtt_ms;
	double capacity_x; /* Space capacity / steady-state rate */
	double median_per_hour, sigma;
	unsigned seed;
	const char *csv;
	double max_peak;      /* --max-peak: exit 1 above (0: no check) */
	double max_drain_min; /* --max-drain: exit 1 above (0: no check) */
	int no_catchup;       /* --no-catchup 1: without catch-up pacing */
};

/* ---- randomness (xorshift; the uploader's own draws come from here) ---- */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd64(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}
static double rnd01(void)
{
	return (double)(rnd64() >> 11) / 9007199254740992.0;
}
static double rnd_normal(void)
{
	double u = rnd01(), v = rnd01();
	return sqrt(-2.0 * log(u + 1e-300)) * cos(2 * PI * v);
}

/* ---- the spool of one instance ---- */
struct chunk {
	int64_t created_us; /* its oldest event */
	int64_t n;
};
struct retry_row {
	int64_t created_us, next_us;
	int attempts;
};
struct item { /* one claimed row */
	int64_t created_us;
	int attempts;
	tsu_transport tr;
	long status;
	const char *retry_after;
	int64_t done_us; /* when the answer arrives */
};

enum { IDLE, ROUND, PAUSED };

struct inst {
	double rate_per_us;
	double carry; /* fractional events not yet recorded */
	int64_t last_record_us;
	struct chunk *chunks;
	int nchunks, chunk_head, chunk_cap;
	struct retry_row *retry;
	int nretry, cap_retry;
	/* uploader_state */
	int64_t retry_after_until_us, down_until_us, down_count;
	/* the run */
	int state;
	int64_t run_start_us, deadline_us;
	int probe, first, caught_up;
	int64_t last_run_us, cutoff_us;
	int last_level, last_cuts; /* uploader_state "concurrency" */
	tsu_cc cc;
	struct item *batch;
	int nbatch, cap_batch, next_send, round_from, round_n;
	int64_t round_start_us;
	int64_t pending; /* events in the spool */
};

struct bin {
	int64_t seen, ok, throttled, failed;
	int64_t backlog; /* at the bin's end */
	int64_t behind;  /* instances with events older than a cycle */
};

/* ---- the event queue: (time, instance) min-heap ---- */
struct ev {
	int64_t t;
	int i;
};
static struct ev *heap;
static int nheap, capheap;
static void push(int64_t t, int i)
{
	if (nheap == capheap) {
		capheap = capheap ? capheap * 2 : 1024;
		heap = realloc(heap, (size_t)capheap * sizeof(*heap));
		if (!heap)
			abort();
	}
	int k = nheap++;
	while (k > 0 && heap[(k - 1) / 2].t > t) {
		heap[k] = heap[(k - 1) / 2];
		k = (k - 1) / 2;
	}
	heap[k] = (struct ev){t, i};
}
static struct ev pop(void)
{
	struct ev top = heap[0], last = heap[--nheap];
	int k = 0;
	for (;;) {
		int c = 2 * k + 1;
		if (c >= nheap)
			break;
		if (c + 1 < nheap && heap[c + 1].t < heap[c].t)
			c++;
		if (heap[c].t >= last.t)
			break;
		heap[k] = heap[c];
		k = c;
	}
	if (nheap > 0)
		heap[k] = last;
	return top;
}

/* ---- the world ---- */
static struct opts O;
static struct inst *fleet;
static int64_t outage_from_us, outage_to_us, end_us;
static double capacity;       /* requests per second */
static int64_t queue_free_us; /* when Space's queue is next free */
#define QUEUE_MAX_US US       /* at most 1 s of queue */
static struct bin *bins;
static int nbins;
static int64_t recorded, sent_total, dead_total, violations;

static struct bin *bin_at(int64_t t)
{
	int b = (int)(t / (60 * US));
	return b < nbins ? &bins[b] : &bins[nbins - 1];
}

/* Space's answer to one request sent at t. */
static void space_answer(int64_t t, tsu_transport *tr, long *status,
			 const char **retry_after, int64_t *wait_us)
{
	struct bin *b = bin_at(t);
	b->seen++;
	*retry_after = "";
	*wait_us = 0;
	if (t >= outage_from_us && t < outage_to_us) {
		*tr = TSU_NET_CONNECT;
		*status = 0;
		b->failed++;
		return;
	}
	/* A FIFO served at `capacity` per second: a request waits for the
	 * ones before it; one that would wait more than QUEUE_MAX_US is
	 * turned away at once with 429. */
	*tr = TSU_NET_OK;
	int64_t start = t > queue_free_us ? t : queue_free_us;
	if (start - t > QUEUE_MAX_US) {
		*status = 429;
		*retry_after = "1";
		*wait_us = 0;
		b->throttled++;
		return;
	}
	queue_free_us = start + (int64_t)(US / capacity);
	*wait_us = start - t;
	*status = 200;
	b->ok++;
}

/* Events recorded since the last call, dated by the minute they fall in
 * (so that catch-up pacing sees realistic creation times). */
static void record_until(struct inst *in, int64_t t)
{
	while (in->last_record_us < t) {
		int64_t from = in->last_record_us;
		int64_t to = (from / (60 * US) + 1) * 60 * US;
		if (to > t)
			to = t;
		double x = in->carry + in->rate_per_us * (double)(to - from);
		int64_t n = (int64_t)x;
		in->carry = x - (double)n;
		in->last_record_us = to;
		if (n == 0)
			continue;
		if (in->nchunks == in->chunk_cap && in->chunk_head > 0) {
			/* compact first, then grow */
			memmove(in->chunks, in->chunks + in->chunk_head,
				(size_t)(in->nchunks - in->chunk_head) *
				    sizeof(*in->chunks));
			in->nchunks -= in->chunk_head;
			in->chunk_head = 0;
		}
		if (in->nchunks == in->chunk_cap) {
			in->chunk_cap = in->chunk_cap ? 2 * in->chunk_cap : 8;
			in->chunks =
			    realloc(in->chunks, (size_t)in->chunk_cap *
						    sizeof(*in->chunks));
			if (!in->chunks)
				abort();
		}
		in->chunks[in->nchunks++] = (struct chunk){from, n};
		in->pending += n;
		recorded += n;
	}
}

/* Claims up to max due rows, oldest first (by when they were recorded,
 * as the spool's claim goes by id): retry rows that are due and the FIFO
 * of new events, merged. */
static int claim(struct inst *in, int64_t t, int max)
{
	in->nbatch = 0;
	if (in->cap_batch < max) {
		in->cap_batch = max;
		in->batch =
		    realloc(in->batch, (size_t)max * sizeof(*in->batch));
		if (!in->batch)
			abort();
	}
	while (in->nbatch < max) {
		int best = -1;
		for (int k = 0; k < in->nretry; k++)
			if (in->retry[k].next_us <= t &&
			    (best < 0 || in->retry[k].created_us <
					     in->retry[best].created_us))
				best = k;
		int have_chunk = in->chunk_head < in->nchunks;
		if (best >= 0 && (!have_chunk ||
				  in->retry[best].created_us <=
				      in->chunks[in->chunk_head].created_us)) {
			in->batch[in->nbatch++] = (struct item){
			    .created_us = in->retry[best].created_us,
			    .attempts = in->retry[best].attempts};
			in->retry[best] = in->retry[--in->nretry];
		} else if (have_chunk) {
			struct chunk *c = &in->chunks[in->chunk_head];
			in->batch[in->nbatch++] =
			    (struct item){.created_us = c->created_us};
			if (--c->n == 0)
				in->chunk_head++;
		} else {
			break;
		}
	}
	in->next_send = 0;
	return in->nbatch;
}

static int64_t oldest_us(const struct inst *in)
{
	int64_t o = INT64_MAX;
	if (in->chunk_head < in->nchunks)
		o = in->chunks[in->chunk_head].created_us;
	for (int k = 0; k < in->nretry; k++)
		if (in->retry[k].created_us < o)
			o = in->retry[k].created_us;
	return o;
}

static void schedule_next_run(struct inst *in, int i, int64_t t)
{
	if (in->state != IDLE) { /* drain.c's note_concurrency() */
		in->last_level = tsu_cc_limit(&in->cc);
		in->last_cuts = in->cc.cuts;
	}
	int64_t next = in->run_start_us + (int64_t)(O.period_s * US);
	if (next < t)
		next = t;
	next += (int64_t)(rnd01() * O.splay_s * US);
	in->state = IDLE;
	push(next, i);
}

/* drain.c's batch size: 1 for a probe, the level for the first batch,
 * then tsu_cc_batch(). */
static int batch_size(struct inst *in)
{
	int level = tsu_cc_limit(&in->cc), batch = TSU_DEFAULT_BATCH;
	return in->probe   ? 1
	       : in->first ? (level < batch ? level : batch)
			   : tsu_cc_batch(&in->cc, batch);
}

static void send_round(struct inst *in, int i, int64_t t)
{
	int left = in->nbatch - in->next_send;
	int k = tsu_cc_limit(&in->cc);
	if (k > left)
		k = left;
	if (t < in->retry_after_until_us)
		violations++; /* a request during a run-wide wait */
	in->round_from = in->next_send;
	in->round_n = k;
	in->round_start_us = t;
	in->next_send += k;
	int64_t last = t;
	for (int j = in->round_from; j < in->round_from + k; j++) {
		int64_t w;
		space_answer(t, &in->batch[j].tr, &in->batch[j].status,
			     &in->batch[j].retry_after, &w);
		in->batch[j].done_us = t + (int64_t)(O.rtt_ms * 1000) + w;
		if (in->batch[j].done_us > last)
			last = in->batch[j].done_us;
	}
	in->state = ROUND;
	push(last, i);
}

static void end_batch_and_continue(struct inst *in, int i, int64_t t);
static void add_retry(struct inst *in, int64_t created, int64_t next,
		      int attempts);

/* drain.c's keep_until(): rows recorded after the cutoff go back unsent
 * (here: due at once, ahead of the FIFO); returns the rows kept. */
static int keep_until(struct inst *in, int64_t t)
{
	int k = 0;
	while (k < in->nbatch && in->batch[k].created_us <= in->cutoff_us)
		k++;
	if (k < in->nbatch)
		in->caught_up = 1;
	for (int j = k; j < in->nbatch; j++)
		add_retry(in, in->batch[j].created_us, t,
			  in->batch[j].attempts);
	in->nbatch = k;
	return k;
}

/* A run starts: drain.c's gates. */
static void run_start(struct inst *in, int i, int64_t t)
{
	in->run_start_us = t;
	record_until(in, t);
	if (in->retry_after_until_us > t) { /* Space asked to wait */
		schedule_next_run(in, i, t);
		return;
	}
	in->probe = in->down_until_us > t;
	in->first = 1;
	in->caught_up = 0;
	in->deadline_us = t + (int64_t)MAX_SECONDS * US;
	int64_t prev = in->last_run_us;
	in->last_run_us = t;
	tsu_cc_init(&in->cc, 0, 0);
	/* drain.c's resume_concurrency() */
	if (prev && t - prev <= TSU_CC_MEMORY_MS * 1000 && in->last_cuts > 0)
		tsu_cc_resume(&in->cc, in->last_level);
	if (claim(in, t, batch_size(in)) == 0) {
		schedule_next_run(in, i, t);
		return;
	}
	/* drain.c: catch-up pacing from the first batch's oldest row.  The
	 * simulation's clock starts at 0; the uploader's is unix time. */
	int64_t cut = tsu_catchup_cutoff_ms(
	    in->batch[0].created_us / 1000 + EPOCH_MS,
	    prev ? prev / 1000 + EPOCH_MS : 0, t / 1000 + EPOCH_MS);
	in->cutoff_us = cut == INT64_MAX || O.no_catchup
			    ? INT64_MAX
			    : (cut - EPOCH_MS) * 1000;
	if (keep_until(in, t) == 0) {
		schedule_next_run(in, i, t);
		return;
	}
	send_round(in, i, t);
}

/* The answers of a round arrive at t. */
static void round_done(struct inst *in, int i, int64_t t)
{
	int stop = 0;
	for (int k = in->round_from; k < in->round_from + in->round_n; k++) {
		const struct item *it = &in->batch[k];
		tsu_cc_signal sig = tsu_cc_signal_of(it->tr, it->status);
		if (sig == TSU_CC_THROTTLED)
			stop = 1; /* http.c starts no more of the batch */
		tsu_cc_sample(&in->cc, sig, in->round_start_us, it->done_us,
			      in->round_n);
	}
	if (in->next_send < in->nbatch && !stop) {
		send_round(in, i, t); /* the rest of the batch */
		return;
	}
	end_batch_and_continue(in, i, t);
}

static void add_retry(struct inst *in, int64_t created, int64_t next,
		      int attempts)
{
	if (in->nretry == in->cap_retry) {
		in->cap_retry = in->cap_retry ? 2 * in->cap_retry : 16;
		in->retry = realloc(in->retry,
				    (size_t)in->cap_retry * sizeof(*in->retry));
		if (!in->retry)
			abort();
	}
	in->retry[in->nretry++] = (struct retry_row){created, next, attempts};
}

/* drain.c's judge(): the batch's answers through the uploader's own
 * tsu_judge(), rows never sent as aborted transfers (RELEASE).  Returns
 * the batch's sums; the rows go back to the spool as the verdicts say. */
static tsu_tally judge_batch(struct inst *in, int64_t t)
{
	static tsu_answer *a;
	static telespool__outcome *out;
	static char(*why)[200];
	static int cap;
	static unsigned endpoint_ok;
	const int64_t now_ms = t / 1000 + EPOCH_MS;
	const tsu_judge_params p = {now_ms,
				    TSU_DEFAULT_MAX_ATTEMPTS,
				    TSU_DEFAULT_MAX_AGE_MS,
				    TSU_BACKOFF_BASE_MS,
				    TSU_BACKOFF_CAP_MS,
				    TSU_RETRY_AFTER_MAX_MS};
	tsu_tally tally;

	if (cap < in->nbatch) {
		cap = in->nbatch;
		a = realloc(a, (size_t)cap * sizeof(*a));
		out = realloc(out, (size_t)cap * sizeof(*out));
		why = realloc(why, (size_t)cap * sizeof(*why));
		if (!a || !out || !why)
			abort();
	}
	for (int k = 0; k < in->nbatch; k++) {
		const struct item *it = &in->batch[k];
		int sent = k < in->next_send;
		a[k] = (tsu_answer){"query",
				    it->attempts,
				    it->created_us / 1000 + EPOCH_MS,
				    sent ? it->tr : TSU_NET_ABORTED,
				    sent ? it->status : 0,
				    NULL,
				    0,
				    NULL,
				    sent ? it->retry_after : NULL,
				    rnd64()};
		memset(&out[k], 0, sizeof(out[k]));
	}
	tsu_judge(a, (size_t)in->nbatch, &p, &endpoint_ok, out, why, &tally);
	for (int k = 0; k < in->nbatch; k++) {
		const struct item *it = &in->batch[k];
		if (out[k].verdict == TELESPOOL__RETRY)
			add_retry(in, it->created_us,
				  (out[k].next_attempt_ms - EPOCH_MS) * 1000,
				  it->attempts + 1);
		else if (out[k].verdict == TELESPOOL__RELEASE)
			add_retry(in, it->created_us, t, it->attempts);
		else if (out[k].verdict == TELESPOOL__DEAD)
			dead_total++;
	}
	return tally;
}

/* send_batch()'s batch_end() and drain()'s loop, as in drain.c. */
static void end_batch_and_continue(struct inst *in, int i, int64_t t)
{
	tsu_tally tally = judge_batch(in, t);
	int sent = tally.sent, throttled = tally.throttled,
	    retryable = tally.retryable;
	int64_t retry_after = tally.retry_after * 1000;

	in->pending -= sent + tally.dead;
	sent_total += sent;

	int go = 1;
	if (throttled) {
		int64_t wait =
		    retry_after > 0 ? retry_after : TSU_BACKOFF_BASE_MS * 1000;
		in->retry_after_until_us = t + wait;
		/* sit_out_retry_after(): only an explicit, short one */
		if (retry_after > 0 && retry_after <= PAUSE_MAX_MS * 1000 &&
		    t + retry_after < in->deadline_us) {
			in->state = PAUSED;
			push(t + retry_after, i);
			in->first = 0;
			in->probe = 0;
			return;
		}
		go = 0;
	} else if (sent == 0 && retryable > 0) {
		in->down_count++;
		int64_t w = tsu_backoff_ms(
		    (int)(in->down_count < 30 ? in->down_count : 30),
		    TSU_BACKOFF_BASE_MS, TSU_BACKOFF_CAP_MS, rnd64());
		in->down_until_us = t + w * 1000;
		go = 0;
	} else if (sent > 0) {
		in->down_count = 0;
		in->down_until_us = 0;
	}
	if (go && (t >= in->deadline_us || in->caught_up))
		go = 0;
	if (!go) {
		schedule_next_run(in, i, t);
		return;
	}
	in->probe = 0;
	in->first = 0;
	if (claim(in, t, batch_size(in)) == 0 || keep_until(in, t) == 0) {
		schedule_next_run(in, i, t);
		return;
	}
	send_round(in, i, t);
}

static void paused_done(struct inst *in, int i, int64_t t)
{
	in->retry_after_until_us = 0; /* waited out */
	if (claim(in, t, batch_size(in)) == 0 || keep_until(in, t) == 0) {
		schedule_next_run(in, i, t);
		return;
	}
	send_round(in, i, t);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fleet [--instances N] [--before H] [--outage H] "
		"[--after H]\n"
		"             [--period S] [--splay S] [--rtt MS] "
		"[--capacity X] [--median PER_HOUR]\n"
		"             [--sigma S] [--seed N] [--csv FILE]\n"
		"             [--max-peak X] [--max-drain MINUTES] "
		"[--no-catchup 1]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	O = (struct opts){.instances = 10000,
			  .hours_before = 1.0,
			  .outage_hours = 1.0,
			  .hours_after = 3.0,
			  .period_s = 900,
			  .splay_s = 60,
			  .rtt_ms = 100,
			  .capacity_x = 3.0,
			  .median_per_hour = 30,
			  .sigma = 1.5,
			  .seed = 1};
	for (int a = 1; a < argc; a++) {
		const char *k = argv[a];
		if (a + 1 >= argc)
			usage();
		const char *v = argv[++a];
		if (!strcmp(k, "--instances"))
			O.instances = atoi(v);
		else if (!strcmp(k, "--before"))
			O.hours_before = atof(v);
		else if (!strcmp(k, "--outage"))
			O.outage_hours = atof(v);
		else if (!strcmp(k, "--after"))
			O.hours_after = atof(v);
		else if (!strcmp(k, "--period"))
			O.period_s = atof(v);
		else if (!strcmp(k, "--splay"))
			O.splay_s = atof(v);
		else if (!strcmp(k, "--rtt"))
			O.rtt_ms = atof(v);
		else if (!strcmp(k, "--capacity"))
			O.capacity_x = atof(v);
		else if (!strcmp(k, "--median"))
			O.median_per_hour = atof(v);
		else if (!strcmp(k, "--sigma"))
			O.sigma = atof(v);
		else if (!strcmp(k, "--seed"))
			O.seed = (unsigned)atoi(v);
		else if (!strcmp(k, "--csv"))
			O.csv = v;
		else if (!strcmp(k, "--no-catchup"))
			O.no_catchup = atoi(v);
		else if (!strcmp(k, "--max-peak"))
			O.max_peak = atof(v);
		else if (!strcmp(k, "--max-drain"))
			O.max_drain_min = atof(v);
		else
			usage();
	}
	if (O.instances < 1 || O.period_s <= 0 || O.rtt_ms <= 0)
		usage();
	rng_state ^= (uint64_t)O.seed * 0x9E3779B97F4A7C15ULL;

	outage_from_us = (int64_t)(O.hours_before * 3600 * US);
	outage_to_us = outage_from_us + (int64_t)(O.outage_hours * 3600 * US);
	end_us = outage_to_us + (int64_t)(O.hours_after * 3600 * US);
	nbins = (int)(end_us / (60 * US)) + 1;
	bins = calloc((size_t)nbins, sizeof(*bins));
	fleet = calloc((size_t)O.instances, sizeof(*fleet));
	if (!bins || !fleet)
		return 2;

	/* Recording rates: log-normal events per hour. */
	double steady = 0;
	for (int i = 0; i < O.instances; i++) {
		double per_h = O.median_per_hour * exp(O.sigma * rnd_normal());
		fleet[i].rate_per_us = per_h / 3600.0 / US;
		steady += per_h / 3600.0;
		fleet[i].last_record_us = 0;
		push((int64_t)(rnd01() * O.period_s * US), i);
	}
	capacity = O.capacity_x * steady;

	int64_t next_sample = 60 * US;
	while (nheap > 0 && heap[0].t < end_us) {
		struct ev e = pop();
		/* Backlog and instances behind, at each minute's end. */
		while (e.t >= next_sample && next_sample <= end_us) {
			struct bin *b = &bins[next_sample / (60 * US) - 1];
			int64_t backlog = 0, behind = 0;
			int64_t cycle =
			    (int64_t)((O.period_s + O.splay_s + 60) * US);
			for (int k = 0; k < O.instances; k++) {
				backlog += fleet[k].pending;
				if (fleet[k].pending > 0 &&
				    next_sample - oldest_us(&fleet[k]) > cycle)
					behind++;
			}
			b->backlog = backlog;
			b->behind = behind;
			next_sample += 60 * US;
		}
		struct inst *in = &fleet[e.i];
		if (in->state == IDLE)
			run_start(in, e.i, e.t);
		else if (in->state == ROUND)
			round_done(in, e.i, e.t);
		else
			paused_done(in, e.i, e.t);
	}

	/* Figures. */
	int b_out = (int)(outage_from_us / (60 * US));
	int b_back = (int)(outage_to_us / (60 * US));
	int b_end = (int)(end_us / (60 * US));
	int b_warm = b_out / 4;
	double steady_seen = 0;
	for (int b = b_warm; b < b_out; b++)
		steady_seen += (double)bins[b].seen;
	steady_seen /= (double)(b_out - b_warm) * 60.0;
	double peak = 0;
	int peak_b = b_back;
	for (int b = b_back; b < b_end; b++)
		if ((double)bins[b].seen / 60.0 > peak) {
			peak = (double)bins[b].seen / 60.0;
			peak_b = b;
		}
	double peak5 = 0;
	for (int b = b_back; b + 5 <= b_end; b++) {
		double sum = 0;
		for (int k = b; k < b + 5; k++)
			sum += (double)bins[k].seen;
		if (sum / 300.0 > peak5)
			peak5 = sum / 300.0;
	}
	int64_t top = 0;
	for (int b = b_back; b < b_end; b++)
		if (bins[b].backlog > top)
			top = bins[b].backlog;
	int most_b = -1;
	for (int b = b_back; b < b_end && top > 0; b++)
		if (bins[b].backlog <= top / 100) {
			most_b = b;
			break;
		}
	int drained_b = -1;
	for (int b = b_back; b < b_end; b++)
		if (bins[b].behind == 0) {
			drained_b = b;
			break;
		}
	int64_t thr_after = 0, seen_after = 0;
	for (int b = b_back; b < b_end; b++) {
		thr_after += bins[b].throttled;
		seen_after += bins[b].seen;
	}
	int64_t pending = 0;
	for (int k = 0; k < O.instances; k++)
		pending += fleet[k].pending;

	printf("fleet: %d instances, %.0f events/h median (sigma %.1f), "
	       "steady %.1f events/s; runs every %.0f s + splay %.0f s; RTT "
	       "%.0f ms\n",
	       O.instances, O.median_per_hour, O.sigma, steady, O.period_s,
	       O.splay_s, O.rtt_ms);
	printf("Space: capacity %.1f req/s (%.1f x steady), down from %.1f h "
	       "to %.1f h, simulated to %.1f h\n",
	       capacity, O.capacity_x, O.hours_before,
	       O.hours_before + O.outage_hours, (double)end_us / 3600.0 / US);
	printf("| figure | measured | target |\n|---|---|---|\n");
	printf("| steady-state request rate Space sees | %.1f /s | - |\n",
	       steady_seen);
	printf("| peak request rate during recovery (1-min bins) / steady | "
	       "%.2f (%.1f /s at +%d min) | <= 2 |\n",
	       peak / steady_seen, peak, peak_b - b_back);
	printf("| peak request rate during recovery (5-min bins) / steady | "
	       "%.2f | - |\n",
	       peak5 / steady_seen);
	if (most_b >= 0)
		printf(
		    "| time until 99 %% of the backlog is delivered | %d min | "
		    "- |\n",
		    most_b - b_back);
	if (drained_b >= 0)
		printf("| time to drain every backlog after the outage (no "
		       "instance holds an event older than one interval) | %d "
		       "min | <= 60 min |\n",
		       drained_b - b_back);
	else
		printf("| time to drain every backlog after the outage | not "
		       "within the simulation | <= 60 min |\n");
	printf("| 429 answers after the outage / requests | %.2f %% | - |\n",
	       seen_after ? 100.0 * (double)thr_after / (double)seen_after
			  : 0.0);
	printf("| events recorded / sent / still pending / lost | %" PRId64
	       " / %" PRId64 " / %" PRId64 " / %" PRId64 " | 0 lost |\n",
	       recorded, sent_total, pending,
	       recorded - sent_total - dead_total - pending);
	printf(
	    "| events dropped by the policy (max attempts, expired) | %" PRId64
	    " | - |\n",
	    dead_total);
	printf("| requests during a run-wide Retry-After wait | %" PRId64
	       " | 0 |\n",
	       violations);

	if (O.csv) {
		FILE *f = fopen(O.csv, "w");
		if (!f) {
			perror(O.csv);
			return 2;
		}
		fprintf(f, "minute,seen_per_s,ok_per_s,throttled_per_s,failed_"
			   "per_s,backlog,behind,steady_per_s,capacity_per_s,"
			   "outage_from_min,outage_to_min\n");
		for (int b = 0; b < b_end; b++)
			fprintf(f,
				"%d,%.2f,%.2f,%.2f,%.2f,%" PRId64 ",%" PRId64
				",%.2f,%.2f,%d,%d\n",
				b, bins[b].seen / 60.0, bins[b].ok / 60.0,
				bins[b].throttled / 60.0, bins[b].failed / 60.0,
				bins[b].backlog, bins[b].behind, steady_seen,
				capacity, b_out, b_back);
		fclose(f);
	}
	int bad = recorded - sent_total - dead_total - pending != 0 ||
		  violations != 0;
	if (O.max_peak > 0 && peak / steady_seen > O.max_peak) {
		fprintf(stderr, "fleet: recovery peak %.2f x steady > %.2f\n",
			peak / steady_seen, O.max_peak);
		bad = 1;
	}
	if (O.max_drain_min > 0 &&
	    (drained_b < 0 || drained_b - b_back > O.max_drain_min)) {
		fprintf(stderr, "fleet: backlog not drained within %.0f min\n",
			O.max_drain_min);
		bad = 1;
	}
	if (recorded - sent_total - dead_total - pending != 0)
		fprintf(stderr, "fleet: events lost\n");
	if (violations)
		fprintf(stderr, "fleet: requests during a Retry-After wait\n");
	for (int k = 0; k < O.instances; k++) {
		free(fleet[k].chunks);
		free(fleet[k].batch);
		free(fleet[k].retry);
	}
	free(fleet);
	free(bins);
	free(heap);
	return bad ? 1 : 0;
}
