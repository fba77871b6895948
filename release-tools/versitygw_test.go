package releasetools

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "gocloud.dev/blob/s3blob" // s3:// (mkdelta registers all clouds through release-tools/clouds)
)

// versityGW starts the Versity S3 Gateway (posix backend) on a loopback
// port with an empty bucket "rel" and sets AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY for it; it returns the s3:// URL of PREFIX in that
// bucket. It skips, saying so, unless $VERSITYGW names the binary (go
// install github.com/versity/versitygw/cmd/versitygw@v1.8.0): the 200-run
// test takes minutes, more than go test's default timeout on a busy machine.
func versityGW(t *testing.T, prefix string) string {
	t.Helper()
	bin := os.Getenv("VERSITYGW")
	if bin == "" {
		t.Skip("VERSITYGW is not set: skipping the tests against a real S3-compatible server (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0, then VERSITYGW=$(go env GOPATH)/bin/versitygw go test ./release-tools -run Versity -timeout 30m; .ci/run does)")
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("VERSITYGW=%s: %v", bin, err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rel"), 0o755); err != nil { // the posix backend's bucket
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY=deltaup", "ROOT_SECRET_KEY=deltaup-secret")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 200 {
			t.Fatalf("versitygw did not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "deltaup")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "deltaup-secret")
	return fmt.Sprintf("s3://rel/%s?endpoint=http://%s&region=us-east-1&use_path_style=true", prefix, addr)
}

// TestVersityPublish: publish, verify, kill between writes, prune against a
// real S3-compatible server (If-None-Match: * on the lease, Cache-Control
// on every object).
func TestVersityPublish(t *testing.T) {
	repo := versityGW(t, "demo")
	ctx := context.Background()
	priv, pub, _ := testKey(t)
	now := time.Now().UTC()
	for i := range 5 {
		publish(t, repo, fmt.Sprintf("1.%d.0", i), versionTree(t, i), priv, now)
	}
	st, done, err := useStore(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	bs := st.(*blobStore)
	for _, rel := range []string{"manifest.json", "manifests/5.json", "archives/demo-1.4.0.tar.zst", "patches/demo-1.3.0-to-1.4.0.dupb"} {
		a, err := bs.b.Attributes(ctx, bs.key(rel))
		if err != nil {
			t.Fatal(err)
		}
		if a.CacheControl != CacheControlFor(rel) {
			t.Errorf("%s: Cache-Control %q, want %q", rel, a.CacheControl, CacheControlFor(rel))
		}
	}
	// A second publisher is refused while the lease is held.
	release, err := st.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, err := OpenStore(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Lock(ctx); !errors.Is(err, ErrRepo) {
		t.Errorf("second lease: %v", err)
	}
	other.Close()
	release()

	// Killed after n writes, for a few n: the client sees 5 or 6; the next
	// publish completes.
	cs := &crashStore{Store: st}
	stores.Lock()
	stores.m[repo].st = cs
	stores.Unlock()
	for i, n := range []int{1, 4, 7, 9, 10} {
		cs.mu.Lock()
		cs.n, cs.writes = n, 0
		cs.mu.Unlock()
		v := fmt.Sprintf("1.%d.0", 5+i)
		if _, err := Publish(ctx, versionTree(t, 5+i), PublishOptions{Repo: repo, App: "demo", Version: v, Key: priv, Now: func() time.Time { return now }}); !errors.Is(err, errCrash) {
			t.Fatalf("killed publish of %s: %v", v, err)
		}
		if seq, err := clientView(ctx, st, pub); err != nil || seq < uint64(5+i) {
			t.Fatalf("after a kill at write %d: sequence %d, %v", n, seq, err)
		}
		cs.mu.Lock()
		cs.n = -1
		cs.mu.Unlock()
		publish(t, repo, v, versionTree(t, 5+i), priv, now)
	}
	rep, err := Verify(ctx, repo, pub, VerifyOptions{})
	if err != nil || !rep.OK() || len(rep.Orphans) != 0 || len(rep.Strays) != 0 || rep.Releases != 10 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	res, err := Prune(ctx, PruneOptions{Repo: repo, Key: priv, Keep: 3})
	if err != nil || len(res.Kept) != 3 || res.BytesAfter != res.BytesBefore-res.DeletedBytes+res.ManifestBytes {
		t.Fatalf("prune: %v %+v", err, res)
	}
	rep, err = Verify(ctx, repo, pub, VerifyOptions{})
	if err != nil || !rep.OK() || len(rep.Orphans) != 0 || len(rep.NoRoute) != 0 || rep.Releases != 3 {
		t.Fatalf("verify after prune: %v %+v", err, rep)
	}
}

// TestVersityInterleaved: 200 publishes (one in four killed after a random
// number of writes, then completed by the next) while pollers read the
// repository as clients do; no poll may see a mixed release.
func TestVersityInterleaved(t *testing.T) {
	repo := versityGW(t, "mix")
	ctx := context.Background()
	priv, pub, _ := testKey(t)
	now := time.Now().UTC()
	const runs = 200
	trees := make([]string, 4)
	for i := range trees {
		trees[i] = versionTree(t, i)
	}
	publish(t, repo, "1.0.0", trees[0], priv, now)
	st, done, err := useStore(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	cs := &crashStore{Store: st, n: -1}
	stores.Lock()
	stores.m[repo].st = cs
	stores.Unlock()

	stop := make(chan struct{})
	var polls, mixed atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 3 {
		reader, err := OpenStore(ctx, repo) // a client's own connection
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer reader.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := clientViewOf(ctx, reader, pub, true); err != nil {
					mixed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				polls.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	rng := rand.New(rand.NewPCG(13, 13))
	killed := 0
	for i := 1; i <= runs; i++ {
		v := fmt.Sprintf("1.%d.0", i)
		opts := PublishOptions{Repo: repo, App: "demo", Version: v, Key: priv, PatchesFrom: 1, NoMilestones: true, Now: func() time.Time { return now }}
		if rng.IntN(4) == 0 {
			cs.mu.Lock()
			cs.n, cs.writes = rng.IntN(8), 0
			cs.mu.Unlock()
			if _, err := Publish(ctx, trees[i%4], opts); !errors.Is(err, errCrash) {
				t.Fatalf("run %d: killed publish: %v", i, err)
			}
			cs.mu.Lock()
			cs.n = -1
			cs.mu.Unlock()
			killed++
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
		if _, err := Publish(ctx, trees[i%4], opts); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d publishes (%d of them killed first and completed by the next), %d polls, %d mixed", runs, killed, polls.Load(), mixed.Load())
	if mixed.Load() != 0 {
		t.Fatalf("%d polls saw a mixed release; first: %v", mixed.Load(), firstErr.Load())
	}
	if polls.Load() < runs {
		t.Errorf("only %d polls over %d publishes", polls.Load(), runs)
	}
}
