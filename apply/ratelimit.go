package apply

import (
	"context"
	"sync"
	"time"
)

// rateLimiter is a token bucket shared by every download that uses the same
// rate (see sharedLimiter). Tokens are bytes; the bucket refills at rate
// bytes per second up to burst. wait may drive the balance negative (a
// reservation) and then sleeps until it is paid back, so a read larger than
// the burst is still admitted at the right average rate.
type rateLimiter struct {
	mu     sync.Mutex
	rate   float64 // bytes per second, > 0
	burst  float64 // bucket capacity in bytes
	tokens float64
	last   time.Time
}

// newRateLimiter returns a bucket of rate bytes/s with a burst of a tenth of a
// second's worth (at least 1 KiB), initially full.
func newRateLimiter(rate int64) *rateLimiter {
	burst := float64(rate) / 10
	if burst < 1024 {
		burst = 1024
	}
	return &rateLimiter{rate: float64(rate), burst: burst, tokens: burst, last: time.Now()}
}

// chunk is the largest read a caller should make between calls to wait, so
// that bytes flow smoothly rather than in bursts far above the burst size.
func (l *rateLimiter) chunk(max int) int {
	if l == nil {
		return max
	}
	if b := int(l.burst); b < max {
		return b
	}
	return max
}

// wait accounts for n bytes and blocks until the bucket allows them, or ctx
// is done (the bytes stay accounted: they have been received already).
func (l *rateLimiter) wait(ctx context.Context, n int) error {
	if l == nil || n <= 0 {
		return ctx.Err()
	}
	l.mu.Lock()
	now := time.Now()
	l.tokens += now.Sub(l.last).Seconds() * l.rate
	if l.tokens > l.burst {
		l.tokens = l.burst
	}
	l.last = now
	l.tokens -= float64(n)
	var delay time.Duration
	if l.tokens < 0 {
		delay = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	if delay <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var (
	limitersMu sync.Mutex
	limiters   = map[int64]*rateLimiter{}
)

// sharedLimiter returns the process-wide bucket for rate bytes/s (nil for
// no limit): every Downloader with the same RateLimit shares one budget, so
// concurrent downloads together stay under it.
func sharedLimiter(rate int64) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	limitersMu.Lock()
	defer limitersMu.Unlock()
	l := limiters[rate]
	if l == nil {
		l = newRateLimiter(rate)
		limiters[rate] = l
	}
	return l
}
