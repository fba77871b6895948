package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/deltaup/deltaup/manifest"
)

// ErrNoRange: a mirror answered a byte-range request with something else
// than exactly that range (the whole file, another range): it cannot serve
// a repair, the next mirror is tried.
var ErrNoRange = errors.New("the mirror does not serve byte ranges")

// FetchRange downloads the size bytes at offset off of the repository file
// at path p into dest with HTTP Range requests (the mirrors in order, with
// retries, the stall timeout, the rate floor and limit of Fetch). The bytes
// go to dest+PartSuffix first; a cut transfer resumes from where the part
// ends; nothing is trusted until their SHA-256 is sum, then the part is
// synced and renamed to dest (a part that does not match is deleted and,
// when it was resumed, fetched once more from the start). If dest already
// holds those bytes no request is made. A mirror that answers with the
// whole file, another range or more bytes fails with ErrNoRange or
// ErrTooLarge and the next one is tried; bytes that do not match fail with
// ErrHashMismatch.
func (d *Downloader) FetchRange(ctx context.Context, p string, off, size int64, sum [32]byte, dest string) error {
	dd, err := d.validate()
	if err != nil {
		return err
	}
	if off < 0 || size <= 0 || off > manifest.MaxSafeInteger-size {
		return fmt.Errorf("apply: fetch range %d+%d of %s: not a range", off, size, p)
	}
	urls, err := dd.urls(p)
	if err != nil {
		return err
	}
	want := manifest.Artifact{Path: p, Size: size, SHA256: sum}
	if ok, err := fileMatches(dest, want); err != nil {
		return err
	} else if ok {
		return nil
	}
	ctx, cancel := dd.withDeadline(ctx)
	defer cancel()
	rg := &rangeFetch{d: dd, art: want, off: off, dest: dest, part: dest + PartSuffix}
	what := fmt.Sprintf("downloading bytes %d-%d of %s", off, off+size-1, p)
	return dd.tryMirrors(ctx, what, urls, 0, func(u string, b *mirrorBudget) *attemptError {
		return rg.attempt(ctx, u, b)
	}, func(err error) error {
		return fmt.Errorf("%s: %w", what, localIO(err, filepath.Dir(dest)))
	})
}

// rangeFetch is one FetchRange call's state: art is the range (its size
// and SHA-256), at off in the file art.Path.
type rangeFetch struct {
	d          *Downloader
	art        manifest.Artifact
	off        int64
	dest, part string
}

// attempt makes one request for what the part lacks of the range.
func (rg *rangeFetch) attempt(ctx context.Context, u string, b *mirrorBudget) *attemptError {
	d, size := rg.d, rg.art.Size
	fail := func(err error, retry bool) *attemptError { return &attemptError{url: u, err: err, retry: retry} }
	local := func(err error) *attemptError { return &attemptError{url: u, err: err, local: true} }
	var have int64
	if fi, err := os.Lstat(rg.part); err == nil && fi.Mode().IsRegular() && fi.Size() <= size {
		have = fi.Size()
	} else if err := removeIfExists(rg.part); err != nil {
		return local(err)
	}
	resumed := have > 0
	if have < size {
		b.grow(size - have)
		first, last := rg.off+have, rg.off+size-1
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		g := newStallGuard(d.StallTimeout, cancel)
		defer g.stop()
		req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
		if err != nil {
			return fail(err, false)
		}
		req.Header.Set("Range", "bytes="+strconv.FormatInt(first, 10)+"-"+strconv.FormatInt(last, 10))
		resp, err := d.Client.Do(req)
		if err != nil {
			return fail(g.translate(ctx, u, err), true)
		}
		defer resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusPartialContent:
			f, l, _, ok := parseContentRange(resp.Header.Get("Content-Range"))
			if !ok || f != first || l != last {
				return fail(fmt.Errorf("%w: %s answered bytes %d-%d with Content-Range %q", ErrNoRange, u, first, last, resp.Header.Get("Content-Range")), false)
			}
		case http.StatusOK:
			return fail(fmt.Errorf("%w: %s answered a request for bytes %d-%d with the whole file (HTTP 200)", ErrNoRange, u, first, last), false)
		case http.StatusRequestedRangeNotSatisfiable:
			return fail(fmt.Errorf("%w: %s has no bytes %d-%d (HTTP 416): it serves another file than the frame index describes", ErrNoRange, u, first, last), false)
		default:
			return classifyStatus(u, resp, d.BackoffMax)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != size-have {
			return fail(fmt.Errorf("%w: %s announces %d bytes for the %d asked", ErrTooLarge, u, resp.ContentLength, size-have), false)
		}
		f, err := openNoFollow(rg.part, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return local(err)
		}
		defer f.Close()
		if _, err := f.Seek(have, io.SeekStart); err != nil {
			return local(err)
		}
		label := fmt.Sprintf("%s (bytes %d-%d)", rg.art.Path, rg.off, rg.off+size-1)
		rep := newProgressReporter(d.Progress, PhaseDownload, label, size)
		lim := sharedLimiter(d.RateLimit)
		buf := make([]byte, lim.chunk(readBufSize))
		pos := have
		rep.update(pos)
		body := io.LimitReader(resp.Body, size-have+1)
		floor := d.newRateFloor(b, have, size)
		for {
			n, rerr := body.Read(buf)
			if n > 0 {
				g.alive()
				if pos+int64(n) > size {
					f.Close()
					if err := removeIfExists(rg.part); err != nil {
						return local(err)
					}
					return fail(fmt.Errorf("%w: %s sent more than the %d bytes asked", ErrTooLarge, u, size-have), false)
				}
				if _, err := f.Write(buf[:n]); err != nil {
					return local(fmt.Errorf("writing %s: %w", rg.part, err))
				}
				pos += int64(n)
				rep.update(pos)
				if aerr := floor.check(pos); aerr != nil {
					return aerr
				}
				g.pause()
				if err := lim.wait(actx, n); err != nil {
					return fail(g.translate(ctx, u, err), true)
				}
				g.alive()
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return fail(fmt.Errorf("%s: after %d of %d bytes: %w", u, pos, size, g.translate(ctx, u, rerr)), true)
			}
		}
		g.stop()
		rep.done(pos)
		if err := f.Close(); err != nil {
			return local(fmt.Errorf("writing %s: %w", rg.part, err))
		}
		if pos < size {
			return fail(fmt.Errorf("%s: body ended after %d of %d bytes; resuming", u, pos, size), true)
		}
	}
	got, err := hashFile(rg.part, nil)
	if err != nil {
		return local(err)
	}
	if got != rg.art.SHA256 {
		if err := removeIfExists(rg.part); err != nil {
			return local(err)
		}
		return &attemptError{url: u, retry: resumed, noBackoff: resumed, err: fmt.Errorf(
			"%w: %s: bytes %d-%d have SHA-256 %x, the frame index says %x (the mirror serves corrupt or tampered data)", ErrHashMismatch, u, rg.off, rg.off+size-1, got, rg.art.SHA256)}
	}
	if err := syncFile(rg.part); err != nil {
		return local(err)
	}
	if err := os.Rename(rg.part, rg.dest); err != nil {
		return local(fmt.Errorf("installing %s: %w", rg.dest, err))
	}
	syncDir(filepath.Dir(rg.dest))
	return nil
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
