#!/bin/sh
# make cross: the platforms etrnd is for, checked from this Linux machine.
#   * FreeBSD and NetBSD: type-checked and linted (clippy) against rustup's std,
#     without the `tls` feature (ring's C needs the target's C compiler); OpenBSD
#     the same with std built from rust-src (-Zbuild-std: rustup ships no OpenBSD
#     std);
#   * Linux musl for this machine's processor: static builds with and without `tls`
#     (musl-gcc for ring's C), and the same db/secrets checked on glibc and musl;
#   * aarch64 musl: a static build, and the unit tests under qemu-user;
#   * the routers — armv7 and 32-bit MIPS of both byte orders, musl, static: built
#     with std from rust-src where rustup has none, Zig's `cc` (PyPI's ziglang) as C
#     compiler, linker and musl; big-endian MIPS runs the unit tests and the
#     integration suite under qemu-user (CROSS_IT selects which integration tests:
#     a sample by default, `all` for the whole suite).
# A target this machine cannot get (no rustup component, no C compiler) is reported
# as `skipped: TARGET (why)`; anything that is tried and fails fails the run.
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
# The same db/secrets on glibc and on musl: hashes both can compute load on both;
# a $y$ hash loads where crypt(3) computes it (glibc with libxcrypt) and is refused
# at load, with its file and line, on musl (whose crypt(3) would call every
# password wrong).
secrets_verdict() { # BINARY SECRETS: etrnd -n's exit code, its message on stderr
    d=$(mktemp -d)
    mkdir -p "$d/db"
    printf 'MAILVAR=.\nPOSTOFFICE=spool\nPIDFILE=etrnd.pid\nLOGDIR=log\nLISTEN=127.0.0.1:0\nHOSTNAME=cross.example\nHOSTS_ORDER=files\nHOSTS_FILE=hosts\n' >"$d/etrnd.conf"
    : >"$d/hosts"
    : >"$d/db/routes"
    printf '%s\n' "$2" >"$d/db/secrets"
    chmod 600 "$d/db/secrets"
    "$1" -n -f "$d/etrnd.conf" >/dev/null
    rc=$?
    rm -rf "$d"
    return $rc
}
musl_bin="target/cross/$m/release/etrnd"
if [ -x "$musl_bin" ] && cargo build -q; then
    # shellcheck disable=SC2016 # the hashes are literal
    both='alice $6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/
bob $5$saltsalt$0rl.MZtoLLPP3X0Rdl8riRnphIcAXJY27/aOAyK2hB5
carol $2b$04$abcdefghijklmnopqrstuuyvPXIbu7xe6/CED2DzX8z6Si09MlzlW
tim {PLAIN}secret'
    # shellcheck disable=SC2016 # the hash is literal
    yes='yves $y$j9T$abcdefghijklmnop$wRwvHNqzMkHLG74uLLCRVTwaZ.a1aIothEUeYGf9oED'
    echo "== the same db/secrets on glibc and musl"
    secrets_verdict target/debug/etrnd "$both" || { echo "glibc refused \$6\$ \$5\$ \$2b\$"; failed=1; }
    secrets_verdict "$musl_bin" "$both" || { echo "musl refused \$6\$ \$5\$ \$2b\$"; failed=1; }
    secrets_verdict target/debug/etrnd "$yes" || { echo "glibc refused \$y\$"; failed=1; }
    if secrets_verdict "$musl_bin" "$yes" 2>/dev/null; then
        echo "musl took a \$y\$ hash it cannot compute"
        failed=1
    fi
fi
# aarch64 musl: a static build with a cross C compiler and linker (Debian's
# gcc-aarch64-linux-gnu: ring's C is freestanding, musl comes with rustup's target),
# and the unit tests run under qemu-user (Debian's qemu-user-static).
a=aarch64-unknown-linux-musl
if [ "$(uname -m)" = aarch64 ]; then
    skip "$a" "this machine's own: see the musl build above"
elif ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    skip "$a" "no aarch64-linux-gnu-gcc or qemu-aarch64-static: apt-get install gcc-aarch64-linux-gnu qemu-user-static"
elif ! have_target "$a"; then
    skip "$a" "rustup cannot install its std here"
else
    echo "== $a: static build, unit tests under qemu"
    export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static
    sh tests/router-cargo.sh "$a" build --release || failed=1
    sh tests/router-cargo.sh "$a" test --lib || failed=1
fi
# std from source (-Zbuild-std) for the targets rustup ships no std for: this
# toolchain's rust-src, its unstable flags allowed by RUSTC_BOOTSTRAP.
have_src() {
    rustup component list --installed 2>/dev/null | grep -q '^rust-src' ||
        rustup component add rust-src >/dev/null 2>&1
}
build_std="-Zbuild-std=std,panic_abort"
o=x86_64-unknown-openbsd
if have_src; then
    echo "== $o: clippy, no tls, std from source"
    RUSTC_BOOTSTRAP=1 cargo clippy $build_std --target "$o" --no-default-features \
        --target-dir target/cross-bsd -- -D warnings || failed=1
else
    skip "$o" "no rust-src for -Zbuild-std: rustup component add rust-src"
fi
# The routers: tests/router-cargo.sh builds each with Zig's cc and musl.
for t in armv7-unknown-linux-musleabihf mips-unknown-linux-musl mipsel-unknown-linux-musl; do
    echo "== $t: static build"
    sh tests/router-cargo.sh "$t" build --release
    case $? in
    0) ls -l "target/cross-routers/$t/release/etrnd" ;;
    69) skip "$t" "no zig or no std for it: see above" ;;
    *) failed=1 ;;
    esac
done
# Big-endian MIPS, the byte order most routers have: the unit tests, then the
# integration suite against its daemon, each under qemu-user. The suite starts the
# daemon through a launcher named etrnd (argv[0] decides what etrnd does).
t=mips-unknown-linux-musl
mips_bin=target/cross-routers/$t/emulated/etrnd
if ! command -v qemu-mips-static >/dev/null; then
    skip "$t under qemu" "no qemu-mips-static: apt-get install qemu-user-static"
elif [ -x "target/cross-routers/$t/release/etrnd" ]; then
    echo "== $t: unit tests under qemu"
    export CARGO_TARGET_MIPS_UNKNOWN_LINUX_MUSL_RUNNER=qemu-mips-static
    sh tests/router-cargo.sh "$t" test --lib || failed=1
    # The suite's daemon is optimised, as the router's, but with debug assertions,
    # as `make test`'s: its fault hooks (ETRND_TEST_*) exist only with them.
    sh tests/router-cargo.sh "$t" build --profile emulated \
        --config 'profile.emulated.inherits="release"' \
        --config profile.emulated.debug-assertions=true \
        --config profile.emulated.lto=false \
        --config profile.emulated.codegen-units=16 || failed=1
    tools=$(pwd)/target/cross-tools
    launcher=$tools/mips/etrnd
    mkdir -p "$tools/mips"
    # The launcher is also what the daemon runs again for a listing (ETRND_TEST_EXE).
    # shellcheck disable=SC2016 # $0 and $@ are the launcher's
    printf '#!/bin/sh\nexport ETRND_TEST_EXE='"'%s'"'\nexec qemu-mips-static -0 "$0" '"'%s'"' "$@"\n' \
        "$launcher" "$(pwd)/$mips_bin" >"$launcher"
    chmod 755 "$launcher" "$tools/mips"
    case "${CROSS_IT:-sample}" in
    all) only="" ;;
    sample) only="etrn:: odmr:: tls:: local:: queue:: delivery::" ;;
    *) only=$CROSS_IT ;;
    esac
    echo "== $t: integration tests under qemu (${only:-all})"
    # qemu-user hands a MIPS program the host's errno in SO_ERROR (111, where MIPS's
    # ECONNREFUSED is 146), so a refused connection is logged as "No error
    # information" there; the test that waits for "Connection refused" is left out.
    refused=faults::a_bounce_that_cannot_be_committed_keeps_the_recipients_and_goes_once_there_is_room
    skip "$t under qemu: $refused" "qemu-user does not translate SO_ERROR's errno for MIPS"
    # shellcheck disable=SC2086 # only is a list of test filters
    ETRND_TEST_BIN=$launcher ETRND_TEST_SLACK=4 cargo test --test it -- $only --skip "$refused" ||
        failed=1
fi
printf '%s' "$skipped"
exit $failed
