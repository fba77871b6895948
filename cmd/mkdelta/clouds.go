//go:build !nocloud

package main

// The bucket drivers of --repo URLs (s3://, gs://, azblob://): most of
// mkdelta's size. `go build -tags nocloud ./cmd/mkdelta` leaves them out
// for a publisher that only writes directories (an 80 MB binary becomes
// about 25 MB); such a mkdelta names the missing driver when given a
// bucket URL.
import _ "github.com/deltaup/deltaup/release-tools/clouds"
