package releasetools

import (
	"os"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// A static server without content ETags (nginx: an ETag of the
// modification time and the size; http.FileServer: Last-Modified only)
// answers a conditional request with 304 when the file it has now carries
// the same modification second (and size) as the one the client fetched:
// a timestamp replaced within the second of the previous one, at the same
// size (a halt right after a publish), would stay invisible to clients
// until the next change. In a local repository each new timestamp (and
// its signatures) therefore gets a modification time at least a second
// after the previous timestamp's. Object stores send content ETags and
// need nothing.

// localMtime returns the modification time of repo/rel in a local
// repository; zero for a bucket or a missing file.
func localMtime(repo, rel string) time.Time {
	st, _, err := storeOf(repo)
	ls, ok := st.(*localStore)
	if err != nil || !ok {
		return time.Time{}
	}
	fi, err := os.Stat(ls.path(rel))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// laterThan sets the modification time of the local files rels to a
// second after prev when theirs is not in a later second than prev (zero
// prev: nothing to do).
func laterThan(repo string, prev time.Time, rels ...string) error {
	if prev.IsZero() {
		return nil
	}
	st, _, err := storeOf(repo)
	ls, ok := st.(*localStore)
	if err != nil || !ok {
		return err
	}
	next := prev.Truncate(time.Second).Add(time.Second)
	for _, rel := range rels {
		p := ls.path(rel)
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.ModTime().Before(next) {
			if err := os.Chtimes(p, next, next); err != nil {
				return err
			}
		}
	}
	return nil
}

// timestampFiles lists the timestamp and its signature files by signers.
func timestampFiles(signers []manifest.PrivateKey) []string {
	out := []string{manifest.TimestampName}
	for _, k := range signers {
		out = append(out, manifest.SigPath(manifest.TimestampName, k.Public().ID()))
	}
	return out
}
