package apply

import (
	"context"
	"net/http"
)

// Validators are the HTTP cache validators of a document as a server sent
// them: its ETag and Last-Modified headers. A client that keeps them with
// the document's bytes asks for it again with If-None-Match and
// If-Modified-Since, and a server whose copy has not changed answers 304
// Not Modified without a body (nginx, object stores and CDNs do).
type Validators struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// ConditionalFetcher is a Fetcher that makes conditional requests. GetIf
// fetches path as Get does, sending If-None-Match / If-Modified-Since from
// v when set: on 304 Not Modified it returns notModified true, no body and
// v unchanged (the caller uses the bytes it kept, and verifies them again);
// otherwise the body and the validators the server sent with it. The
// Downloader implements it.
type ConditionalFetcher interface {
	GetIf(ctx context.Context, path string, max int64, v Validators) (body []byte, got Validators, notModified bool, err error)
}

// conditional carries one conditional request through Get's retries and
// mirrors.
type conditional struct {
	send, got Validators
	unchanged bool
}

func (c *conditional) set(req *http.Request) {
	if c == nil {
		return
	}
	// An ETag when there is one: Last-Modified has a resolution of one
	// second, so a document replaced within the second it was fetched in
	// would be answered 304 (the client then keeps the older copy, which
	// it verifies, until the next change).
	if c.send.ETag != "" {
		req.Header.Set("If-None-Match", c.send.ETag)
	} else if c.send.LastModified != "" {
		req.Header.Set("If-Modified-Since", c.send.LastModified)
	}
}

// notModified reports a 304 to a conditional request.
func (c *conditional) notModified(resp *http.Response) bool {
	if c == nil || resp.StatusCode != http.StatusNotModified || c.send == (Validators{}) {
		return false
	}
	c.unchanged, c.got = true, c.send
	return true
}

func (c *conditional) record(resp *http.Response) {
	if c == nil {
		return
	}
	c.unchanged = false
	c.got = Validators{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
}

// GetIf implements ConditionalFetcher: Get with If-None-Match and
// If-Modified-Since. Cost on 304: one request and the response headers.
func (d *Downloader) GetIf(ctx context.Context, p string, max int64, v Validators) ([]byte, Validators, bool, error) {
	c := &conditional{send: v}
	body, err := d.get(ctx, p, max, c)
	if err != nil {
		return nil, Validators{}, false, err
	}
	if c.unchanged {
		return nil, v, true, nil
	}
	return body, c.got, false, nil
}
