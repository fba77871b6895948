module github.com/deltaup/deltaup

go 1.26

require (
	github.com/dsnet/compress v0.0.0-20171208185109-cc9eb1d7ad76
	github.com/gabstv/go-bsdiff v1.0.5
	github.com/klauspost/compress v1.20.4
	github.com/spf13/pflag v1.1.0
)
