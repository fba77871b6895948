#!/bin/sh
# Tree pairs of issue 10 (point 2, tree-wide matching) in one run: deltaup
# (solid bundles), optionally a baseline mkdelta ($BASE_MKDELTA), tar of each
# tree + zstd --ultra -22 --long=31 --patch-from, and hdiffz in directory
# mode (-m-6 -c-lzma2-9-16m) when on PATH (bench/build-peers.sh). Every
# round trip is verified (diff -r against the new tree). Prints one
# markdown row per pair and tool: bytes, diff s, diff peak MiB, apply s,
# apply peak MiB (GNU time, wall and max RSS). Usage:
#
#   MKDELTA=... DELTAUP=... [BASE_MKDELTA=...] nice -n 10 bench/solid-trees.sh [CORPUS]
set -eu
corpus=${1:-${DELTAUP_CORPUS:-$HOME/.cache/deltaup-corpus}}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pairs="prettier/3.3.0:prettier/3.3.1 prettier/3.3.1:prettier/3.3.2 prettier/3.3.2:prettier/3.3.3
esbuild/0.25.0:esbuild/0.25.1 esbuild-win32-x64/0.25.0:esbuild-win32-x64/0.25.1
lightningcss-linux-x64/1.28.1:lightningcss-linux-x64/1.28.2 lightningcss-linux-x64/1.28.2:lightningcss-linux-x64/1.29.0
oxlint-linux-x64/1.21.0:oxlint-linux-x64/1.22.0"
tm() { # tm OUTVAR-PREFIX cmd...: runs cmd, sets "$1_s" and "$1_mib"
	p=$1; shift
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
	read -r s kb <"$work/time"
	eval "${p}_s=$s; ${p}_mib=$(awk "BEGIN{printf \"%.1f\", $kb/1024}")"
}
row() { # row PAIR TOOL PATCH OK
	printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$(stat -c %s "$3")" "$d_s" "$d_mib" "$a_s" "$a_mib" "$4"
}
echo "| tree pair | tool | bytes | diff s | diff peak MiB | apply s | apply peak MiB | round trip ok |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
for p in $pairs; do
	o=$corpus/${p%%:*}
	n=$corpus/${p#*:}
	[ -d "$o" ] && [ -d "$n" ] || continue
	label="${p%%:*} → ${p#*/*:*/}"
	label="${p%%:*} → ${p##*/}"
	for tool in deltaup base; do
		mk=$MKDELTA
		if [ $tool = base ]; then
			[ -n "${BASE_MKDELTA:-}" ] || continue
			mk=$BASE_MKDELTA
		fi
		rm -rf "$work/out" "$work/b"
		tm d "$mk" "$o" "$n" -o "$work/b"
		tm a "$DELTAUP" patch "$o" "$work/b" -o "$work/out"
		ok=no; diff -r "$work/out" "$n" >/dev/null && ok=yes
		row "$label" "$tool" "$work/b" $ok
	done
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu -C "$o" -cf "$work/old.tar" .
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu -C "$n" -cf "$work/new.tar" .
	rm -rf "$work/x" "$work/z.out"
	tm d zstd -q -f --ultra -22 --long=31 --patch-from="$work/old.tar" "$work/new.tar" -o "$work/z"
	tm a zstd -q -f -d --long=31 --patch-from="$work/old.tar" "$work/z" -o "$work/z.out"
	ok=no; cmp -s "$work/z.out" "$work/new.tar" && ok=yes
	row "$label" "tar+zstd -22 --long=31" "$work/z" $ok
	if command -v hdiffz >/dev/null; then
		rm -rf "$work/h" "$work/hout"
		tm d hdiffz -m-6 -c-lzma2-9-16m -f "$o" "$n" "$work/h"
		tm a hpatchz -s-8m -f "$o" "$work/h" "$work/hout"
		ok=no; diff -r "$work/hout" "$n" >/dev/null && ok=yes
		row "$label" "hdiffz dir -m-6 -c-lzma2-9-16m" "$work/h" $ok
	fi
done
