#!/bin/sh
# make cross: the platforms etrnd is for, checked from this Linux machine.
#   * FreeBSD and NetBSD: type-checked and linted (clippy) against rustup's std,
#     without the `tls` feature (ring's C needs the target's C compiler);
#   * Linux musl for this machine's processor: static builds with and without `tls`
#     (musl-gcc for ring's C).
# A target this machine cannot get (no rustup component, no C compiler) is reported
# as `skipped: TARGET (why)`; anything that is tried and fails fails the run.
# Not yet here (issue 31): OpenBSD (nightly -Zbuild-std), aarch64, armv7 and
# big-endian MIPS musl builds, and the tests under qemu-user.
set -u
cd "$(dirname "$0")/.." || exit 1
failed=0
skipped=""
skip() { skipped="${skipped}skipped: $1 ($2)
"; }
have_target() {
    rustup target list --installed 2>/dev/null | grep -qx "$1" ||
        rustup target add "$1" >/dev/null 2>&1
}
for t in x86_64-unknown-freebsd x86_64-unknown-netbsd; do
    if ! have_target "$t"; then
        skip "$t" "rustup cannot install its std here"
        continue
    fi
    echo "== $t: clippy, no tls"
    cargo clippy --target "$t" --no-default-features -- -D warnings || failed=1
done
m="$(uname -m)-unknown-linux-musl"
cc_var=CC_$(echo "$m" | tr - _)
if ! have_target "$m"; then
    skip "$m" "rustup cannot install its std here"
elif [ -z "$(printenv "$cc_var")" ] && ! command -v musl-gcc >/dev/null; then
    skip "$m" "no musl-gcc: apt-get install musl-tools, or set $cc_var"
else
    [ -n "$(printenv "$cc_var")" ] || export "$cc_var=musl-gcc"
    for features in "" "--no-default-features"; do
        echo "== $m: static build $features"
        # shellcheck disable=SC2086 # features is one flag or none
        RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$m" \
            $features --target-dir "target/cross${features:+-notls}" || failed=1
    done
fi
for t in x86_64-unknown-openbsd aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf \
    mips-unknown-linux-musl; do
    skip "$t" "not built by make cross yet"
done
printf '%s' "$skipped"
exit $failed
