// Command s3public makes a bucket of an S3-compatible server readable by
// anyone (a bucket policy granting s3:GetObject to "*"), creating it when
// missing, so that deltaup clients and a CDN in front can fetch a
// repository over plain HTTP. For e2e/run.sh, against a loopback
// versitygw; credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
//
//	s3public -endpoint http://127.0.0.1:7070 -bucket rel
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func main() {
	endpoint := flag.String("endpoint", "", "server `URL` (required)")
	bucket := flag.String("bucket", "", "bucket `NAME` (required)")
	region := flag.String("region", "us-east-1", "`REGION`")
	flag.Parse()
	if *endpoint == "" || *bucket == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: s3public -endpoint URL -bucket NAME")
		os.Exit(2)
	}
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if id == "" || secret == "" {
		fmt.Fprintln(os.Stderr, "s3public: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := s3.New(s3.Options{
		Region:       *region,
		BaseEndpoint: endpoint,
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, nil
		}),
	})
	var err error
	if _, herr := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: bucket}); herr != nil {
		_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket})
	}
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		fmt.Fprintf(os.Stderr, "s3public: creating bucket %s: %v\n", *bucket, err)
		os.Exit(1)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::%s/*"]}]}`, *bucket)
	if _, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: bucket, Policy: &policy}); err != nil {
		fmt.Fprintf(os.Stderr, "s3public: setting the public-read policy of %s: %v\n", *bucket, err)
		os.Exit(1)
	}
}
