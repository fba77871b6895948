#!/bin/sh
# Builds the peers that `go run ./bench --peers` compares against and that
# Debian does not package: HDiffPatch's hdiffz/hpatchz (with lzma2) and the
# pure-Go Zucchini port. Usage:
#
#   bench/build-peers.sh SRC_DIR BIN_DIR
#
# SRC_DIR must hold checkouts of github.com/sisong/HDiffPatch (as
# HDiffPatch/), github.com/sisong/lzma (as lzma/, HDiffPatch's Makefile finds
# it at ../lzma) and github.com/404Setup/go-zucchini (as go-zucchini/). The
# programs land in BIN_DIR; put it first on PATH for the bench. zstd, xz and
# bsdiff come from Debian (apt-get install zstd xz-utils bsdiff).
set -eu
if [ $# -ne 2 ]; then
	echo "usage: $0 SRC_DIR BIN_DIR" >&2
	exit 2
fi
src=$1
bin=$2
mkdir -p "$bin"
# Only the lzma codec is needed (-c-lzma2-9-16m); the other plugins are off
# so that no system library is required.
make -C "$src/HDiffPatch" -j2 LDEF=0 ZLIB=0 ZSTD=0 MD5=0 XXH=0 BSD=0 VCD=0 BZIP2=0 LZMA=1 >/dev/null
cp "$src/HDiffPatch/hdiffz" "$src/HDiffPatch/hpatchz" "$bin/"
(cd "$src/go-zucchini" && go build -o "$bin/zucchini" ./cmd/zucchini)
"$bin/hdiffz" -v 2>/dev/null | head -1 || true
echo "built hdiffz, hpatchz and zucchini in $bin"
