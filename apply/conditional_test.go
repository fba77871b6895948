package apply

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestGetIf(t *testing.T) {
	ctx := context.Background()
	srv := newRepoServer(t, map[string][]byte{"timestamp.json": []byte("first")})
	d := &Downloader{Mirrors: []string{srv.URL}, Retries: -1, BackoffMin: time.Millisecond}

	body, v, unchanged, err := d.GetIf(ctx, "timestamp.json", 100, Validators{})
	if err != nil || unchanged || string(body) != "first" || v.ETag == "" || v.LastModified == "" {
		t.Fatalf("first GetIf: %q %+v %v %v", body, v, unchanged, err)
	}
	body2, v2, unchanged, err := d.GetIf(ctx, "timestamp.json", 100, v)
	if err != nil || !unchanged || body2 != nil || v2 != v {
		t.Fatalf("unchanged: %q %+v %v %v", body2, v2, unchanged, err)
	}
	if reqs := srv.requests("timestamp.json"); len(reqs) != 2 || reqs[1].Sent != 0 || reqs[1].Status != 304 {
		t.Fatalf("requests: %+v", reqs)
	}
	srv.mu.Lock()
	srv.files["timestamp.json"] = []byte("second")
	srv.mu.Unlock()
	body, v3, unchanged, err := d.GetIf(ctx, "timestamp.json", 100, v)
	if err != nil || unchanged || string(body) != "second" || v3.ETag == v.ETag {
		t.Fatalf("changed: %q %+v %v %v", body, v3, unchanged, err)
	}
	// Only Last-Modified kept: If-Modified-Since.
	if _, _, unchanged, err := d.GetIf(ctx, "timestamp.json", 100, Validators{LastModified: v3.LastModified}); err != nil || !unchanged {
		t.Fatalf("If-Modified-Since: %v %v", unchanged, err)
	}
	// A 304 to a request that sent no validator is an error, not an
	// empty document; the cap holds for conditional requests too.
	srv.setFault("timestamp.json", repoFault{Status: 304, Times: 1})
	if _, _, _, err := d.GetIf(ctx, "timestamp.json", 100, Validators{}); err == nil {
		t.Fatal("304 without a validator accepted")
	}
	if _, _, _, err := d.GetIf(ctx, "timestamp.json", 3, Validators{}); err == nil {
		t.Fatal("cap not enforced")
	}
	if b, err := d.Get(ctx, "timestamp.json", 100); err != nil || !bytes.Equal(b, []byte("second")) {
		t.Fatalf("Get: %q %v", b, err)
	}
}
