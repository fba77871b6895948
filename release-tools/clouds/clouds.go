// Package clouds registers the gocloud.dev/blob drivers that
// releasetools.OpenStore opens --repo URLs with: s3:// (AWS S3 and any
// S3-compatible store), gs:// (Google Cloud Storage) and azblob:// (Azure
// Blob Storage). Import it for its side effect, as cmd/mkdelta does:
//
//	import _ "github.com/deltaup/deltaup/release-tools/clouds"
//
// It is a package of its own because the three cloud SDKs are large (they
// make up most of mkdelta's 80 MB): a program that publishes only to
// directories, and every test binary of the packages that publish, stays
// small without them. A program may instead import only the driver it
// needs (e.g. gocloud.dev/blob/s3blob).
package clouds

import (
	_ "gocloud.dev/blob/azureblob" // azblob://
	_ "gocloud.dev/blob/gcsblob"   // gs://
	_ "gocloud.dev/blob/s3blob"    // s3://
)
