package apply

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Slow-retrieval defences. Two clocks watch a mirror:
//
//   - rateFloor, per attempt: at least MinRate bytes per second averaged
//     over each MinRateWindow, checked window after window, so a burst
//     carries one window and no more;
//   - mirrorBudget, per mirror and per Get or Fetch, all attempts, retries,
//     restarts and back-off waits included: the bytes still needed at
//     MinRate, plus MinRateWindow and StallTimeout. A mirror that keeps to
//     the floor on average finishes within it; one that does not — it
//     trickles, drops the connection, or ignores Range so that every retry
//     starts from zero — is left for the next mirror once it is spent, and
//     the next mirror resumes the kept part with a Range request.
//
// Both read the Downloader's clock (d.now), which tests replace.

// maxDuration is the largest time.Duration: "no budget".
const maxDuration = time.Duration(math.MaxInt64)

// budgetFor returns need bytes' worth of time at rate bytes per second,
// plus slack, saturating at maxDuration instead of overflowing.
func budgetFor(need, rate int64, slack time.Duration) time.Duration {
	if rate <= 0 {
		return maxDuration
	}
	if need < 0 {
		need = 0
	}
	secs := need / rate
	if slack < 0 || secs >= int64((maxDuration-slack)/time.Second)-1 {
		return maxDuration
	}
	frac := time.Duration(float64(need%rate) / float64(rate) * float64(time.Second))
	return time.Duration(secs)*time.Second + frac + slack
}

// mirrorBudget bounds the time one mirror may take for one Get or Fetch (see
// the top of this file). A zero allowed means no bound (rate floor off).
type mirrorBudget struct {
	now     func() time.Time
	url     string
	start   time.Time
	min     int64
	slack   time.Duration
	need    int64 // the most bytes this mirror has been asked for
	allowed time.Duration
}

// newMirrorBudget starts the budget of mirror u for need bytes.
func (d *Downloader) newMirrorBudget(u string, need int64) *mirrorBudget {
	b := &mirrorBudget{now: d.now, url: u, start: d.now(), min: d.MinRate, slack: d.MinRateWindow + d.StallTimeout}
	b.grow(need)
	return b
}

// grow raises the bytes the budget is for to need, if more: a download that
// restarts from zero on this mirror is allowed the whole size once, not once
// per restart.
func (b *mirrorBudget) grow(need int64) {
	if b.min <= 0 || (need <= b.need && b.allowed > 0) {
		return
	}
	b.need = max(b.need, need)
	b.allowed = budgetFor(b.need, b.min, b.slack)
}

// left is the time the mirror still has (maxDuration without a budget).
func (b *mirrorBudget) left() time.Duration {
	if b.allowed == 0 {
		return maxDuration
	}
	return max(b.allowed-b.now().Sub(b.start), 0)
}

// spent returns an ErrTooSlow error once the mirror's time is up.
func (b *mirrorBudget) spent() error {
	if b.allowed == 0 || b.allowed == maxDuration {
		return nil
	}
	if el := b.now().Sub(b.start); el >= b.allowed {
		return fmt.Errorf("%w: %s had %v, the time allowed for %d bytes at the floor of %d bytes/s plus %v, and did not finish (a slow or hostile mirror: the next mirror is tried, bytes received are kept)",
			ErrTooSlow, b.url, el.Round(time.Millisecond), b.need, b.min, b.slack)
	}
	return nil
}

// rateFloor checks that an attempt receives at least min bytes per second,
// averaged over each window, and that its mirror's budget is not spent.
type rateFloor struct {
	b      *mirrorBudget
	min    int64
	window time.Duration
	since  time.Time
	from   int64
	want   int64 // the position at which the transfer is complete; 0 unknown
}

// newRateFloor starts the checks of an attempt that holds pos bytes and is
// complete at want (0: unknown).
func (d *Downloader) newRateFloor(b *mirrorBudget, pos, want int64) *rateFloor {
	return &rateFloor{b: b, min: d.MinRate, window: d.MinRateWindow, since: b.now(), from: pos, want: want}
}

// check is called with the bytes held after each read. A spent budget is
// not retried on this mirror; a window under the floor is.
func (r *rateFloor) check(pos int64) *attemptError {
	if r.want > 0 && pos >= r.want {
		return nil // complete: nothing left to wait for
	}
	if err := r.b.spent(); err != nil {
		return &attemptError{url: r.b.url, err: err}
	}
	if r.min <= 0 {
		return nil
	}
	now := r.b.now()
	el := now.Sub(r.since)
	if el < r.window {
		return nil
	}
	if got := pos - r.from; float64(got) < float64(r.min)*el.Seconds() {
		return &attemptError{url: r.b.url, retry: true, err: fmt.Errorf("%w: %s sent %d bytes in %v, under the floor of %d bytes/s (a slow or hostile mirror; the part is kept)",
			ErrTooSlow, r.b.url, got, el.Round(time.Millisecond), r.min)}
	}
	r.since, r.from = now, pos
	return nil
}

// tryMirrors runs attempt against each mirror in turn until one succeeds. On
// one mirror it retries up to d.Retries times with back-off, within the
// mirror's budget for need bytes (attempt may grow it). local, if set, turns
// a local file-system failure into the error returned at once: no mirror can
// help with that.
func (d *Downloader) tryMirrors(ctx context.Context, what string, urls []string, need int64,
	attempt func(u string, b *mirrorBudget) *attemptError, local func(error) error) error {
	var errs []error
	for _, u := range urls {
		b := d.newMirrorBudget(u, need)
		var last error
		for try := 0; ; try++ {
			aerr := attempt(u, b)
			if aerr == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctxError(what+" from "+u, ctx.Err())
			}
			if aerr.local && local != nil {
				return local(aerr.err)
			}
			last = aerr
			if !aerr.retry || try >= d.Retries {
				break
			}
			wait := aerr.retryAfter
			if wait == 0 && !aerr.noBackoff {
				wait = d.backoff(try)
			}
			if err := sleepCtx(ctx, min(wait, b.left())); err != nil {
				return ctxError(what+" from "+u, err)
			}
			if err := b.spent(); err != nil {
				last = &attemptError{url: u, err: fmt.Errorf("%w; the last attempt: %w", err, aerr.err)}
				break
			}
		}
		errs = append(errs, last)
	}
	return newMirrorsError(what, errs)
}
