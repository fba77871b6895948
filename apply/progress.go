package apply

import "time"

// Progress phases.
const (
	PhaseManifest = "manifest" // Get: small documents (manifest, signature, file lists)
	PhaseDownload = "download" // Fetch: artifact bytes arriving
	PhaseVerify   = "verify"   // Fetch: hashing the complete file
)

// Progress reports how a transfer is going. Downloader.Progress receives at
// most about ten reports a second per transfer, plus a final one when a
// phase completes (then Bytes == Total).
type Progress struct {
	Phase string // PhaseManifest, PhaseDownload or PhaseVerify
	Path  string // repository path of the document or artifact
	// Bytes is how many bytes are held so far (a resumed download starts at
	// the size of its kept part; it goes back only when a download restarts
	// from the beginning). Total is the expected size, 0 when unknown.
	Bytes, Total int64
	Rate         float64       // bytes per second, smoothed; 0 until measured
	ETA          time.Duration // estimated time left; 0 when unknown
}

// progressInterval is the minimum time between two reports of one transfer.
const progressInterval = 100 * time.Millisecond

// progressReporter throttles and smooths reports for one transfer phase.
type progressReporter struct {
	fn          func(Progress)
	phase, path string
	total       int64

	lastEmit  time.Time
	lastBytes int64
	rate      float64
	started   bool
}

func newProgressReporter(fn func(Progress), phase, path string, total int64) *progressReporter {
	return &progressReporter{fn: fn, phase: phase, path: path, total: total}
}

// update reports bytes held, unless a report went out less than
// progressInterval ago.
func (p *progressReporter) update(bytes int64) {
	if p == nil || p.fn == nil {
		return
	}
	now := time.Now()
	if p.started && now.Sub(p.lastEmit) < progressInterval {
		return
	}
	p.emit(now, bytes)
}

// done sends the final report of the phase, always.
func (p *progressReporter) done(bytes int64) {
	if p == nil || p.fn == nil {
		return
	}
	p.emit(time.Now(), bytes)
}

func (p *progressReporter) emit(now time.Time, bytes int64) {
	if p.started {
		if dt := now.Sub(p.lastEmit).Seconds(); dt > 0 && bytes >= p.lastBytes {
			inst := float64(bytes-p.lastBytes) / dt
			if p.rate == 0 {
				p.rate = inst
			} else {
				const alpha = 0.3 // exponential moving average weight
				p.rate = alpha*inst + (1-alpha)*p.rate
			}
		}
	}
	p.started = true
	p.lastEmit, p.lastBytes = now, bytes
	var eta time.Duration
	if p.total > 0 && p.rate > 0 && bytes < p.total {
		eta = time.Duration(float64(p.total-bytes) / p.rate * float64(time.Second))
	}
	p.fn(Progress{Phase: p.phase, Path: p.path, Bytes: bytes, Total: p.total, Rate: p.rate, ETA: eta})
}
