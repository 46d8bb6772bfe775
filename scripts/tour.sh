#!/usr/bin/env bash
# The README's five-minute tour, run exactly as written there, printing what the README
# shows: progress bars (erased in a terminal) are dropped, and what depends on the
# machine or the moment (timings, throughput, process and job ids, ETAs, the thread count
# auto picks, and the "timing unreliable" verdict of a busy machine) is elided as … or
# left out, so the quoted output claims nothing about speed. It works in a fresh temporary folder
# (so every run trains), with the data directory of $SPECTRAL_BENCH_DATA (MNIST is
# downloaded there if missing), and removes the folder at the end.
#
#   bash scripts/tour.sh          # after the quick start's install, in its virtual environment
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

elide() {
    tr '\r' '\n' | grep -v -E '(step|it)/s\]|^\s*$|\| *[0-9]+/[0-9]+ \[|^warning: timing unreliable' | sed -E \
        -e 's/; timing unreliable: .*$//' \
        -e 's/, [0-9]+ CPU threads? each/, … CPU thread(s) each/' \
        -e 's/[0-9]+\.[0-9]+s (train|eval)/…s \1/g' \
        -e 's/train [0-9]+\.[0-9]+s \([0-9]+\.[0-9]+s\/epoch, [0-9]+ img\/s\)/train …s (…s\/epoch, … img\/s)/' \
        -e 's/train [0-9]+\.[0-9]+s/train …s/' \
        -e 's/\(job [0-9]+\)/(job …)/' \
        -e 's/^(  [0-9a-f]{12}-s[0-9]+ .* (done|running|queued|failed) +)[0-9]+( +)/\1…\3/' \
        -e 's/about [0-9.]+ (s|min|h) left/about … left/' \
        -e 's/\(pid [0-9]+\)/(pid …)/'
}

tour() {
    echo "\$ $*"
    "$@" 2>&1 | elide
    echo
}

tour python -m harness run --method cnn --dataset mnist --subset 5000 --epochs 1 --threads 1
tour python -m harness run --method cemnet --dataset mnist --subset 5000 --epochs 1 --threads 1
tour python -m harness run --method cemnet --dataset mnist --subset 5000 --epochs 6 --threads 1
tour python -m harness sweep smoke --executor local
tour python -m harness status smoke
tour python -m harness report smoke --out reports/out/smoke
