package apply

import "context"

// Result is what a background Prepare reports.
type Result struct {
	Prepared *Prepared // nil on error
	Err      error
}

// PrepareInBackground runs Prepare in a goroutine and reports once on the
// returned channel (buffered; it is then closed): an app checks at startup
// without waiting, downloads in the background, and applies at its next
// start (Resume) or on demand (Install). Cancel ctx to stop the download;
// verified partial downloads are kept for the next run.
func (u *Updater) PrepareInBackground(ctx context.Context) <-chan Result {
	ch := make(chan Result, 1)
	go func() {
		defer close(ch)
		p, err := u.Prepare(ctx)
		ch <- Result{Prepared: p, Err: err}
	}()
	return ch
}

// Resume is what a Go app calls first thing in main: it carries a pending
// update forward from any state a crash or a re-exec left it in (Install),
// and does nothing (quickly) when none is pending. In the process that was
// relaunched after a swap, call Confirm(backupDir) once the app is up.
func (u *Updater) Resume(ctx context.Context) (*Installed, error) {
	return u.Install(ctx)
}
