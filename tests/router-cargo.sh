#!/bin/sh
# router-cargo.sh TRIPLE CARGO-SUBCOMMAND [ARGS...]: cargo for a router's static musl
# target (armv7, 32-bit MIPS of either byte order, aarch64, ...), built in
# target/cross-routers (or ROUTER_TARGET_DIR). The C compiler (ring's C) and linker
# is CC_<triple> when set (with rustup's musl), else Zig's `cc` with its own musl
# (PyPI's ziglang, fetched with pip into target/cross-tools/py-VERSION: nothing is
# installed on the system);
# the target's std is rustup's where it ships one, else built from rust-src
# (-Zbuild-std, allowed on this toolchain by RUSTC_BOOTSTRAP). Exits 69, with the reason, when no C compiler
# or no std can be had.
set -u
# The Zig release the routers are built with.
ZIGLANG_VERSION=0.17.1
[ $# -ge 2 ] || { echo "usage: $0 TRIPLE CARGO-SUBCOMMAND [ARGS...]" >&2; exit 64; }
t=$1
shift
cd "$(dirname "$0")/.." || exit 1
case "$t" in
*-linux-musl*) ;;
*) echo "$t: not a Linux musl target" >&2; exit 64 ;;
esac
# Zig names the ABI where rustc's musl triples leave it implicit (soft float on
# 32-bit MIPS).
arch=${t%%-*}
case "$t" in
armv7-*-musleabihf | arm-*-musleabihf) zt=arm-linux-musleabihf ;;
armv7-*-musleabi | arm-*-musleabi) zt=arm-linux-musleabi ;;
mips-* | mipsel-*) zt=$arch-linux-musleabi ;;
*) zt=$arch-linux-musl ;;
esac
u=$(echo "$t" | tr - _)
U=$(echo "$u" | tr '[:lower:]' '[:upper:]')
tools=$(pwd)/target/cross-tools
mkdir -p "$tools"
cc=$(printenv "CC_$u")
if [ -n "$cc" ]; then
    # The caller's C compiler, with rustup's musl; the linker too unless one is named.
    [ -n "$(printenv "CARGO_TARGET_${U}_LINKER")" ] || export "CARGO_TARGET_${U}_LINKER=$cc"
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
else
    # Zig of the pinned release, kept under target/.
    py=$tools/py-$ZIGLANG_VERSION
    find_zig() {
        PYTHONPATH=$py python3 -c '
import importlib.metadata, os, sys, ziglang
if importlib.metadata.version("ziglang") != sys.argv[1]:
    sys.exit(1)
print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))' "$ZIGLANG_VERSION" 2>/dev/null
    }
    zig=$(find_zig)
    if [ -z "$zig" ]; then
        python3 -m pip install -q --target "$py" "ziglang==$ZIGLANG_VERSION" >&2
        zig=$(find_zig)
    fi
    [ -n "$zig" ] || {
        echo "$t: no zig $ZIGLANG_VERSION (pip could not install it into $py: python3-pip?); or set CC_$u" >&2
        exit 69
    }
    # cc-rs passes rustc's --target=TRIPLE, which is not Zig's name: it is dropped.
    cc=$tools/$t-cc
    cat >"$cc" <<EOF
#!/bin/sh
for a do
    shift
    case "\$a" in --target=*) ;; *) set -- "\$@" "\$a" ;; esac
done
exec '$zig' cc -target $zt "\$@"
EOF
    chmod +x "$cc"
    # Zig is the linker too, and brings its own musl and start files, so rustup's
    # are not linked in.
    export "CC_$u=$cc" "CARGO_TARGET_${U}_LINKER=$cc"
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C link-self-contained=no -C target-feature=+crt-static"
fi
# The cargo subcommand first, then the target, then the caller's arguments (which
# may end in `-- test-args`).
sub=$1
shift
if rustup target list --installed 2>/dev/null | grep -qx "$t" ||
    rustup target add "$t" >/dev/null 2>&1; then
    exec cargo "$sub" --target "$t" --target-dir "${ROUTER_TARGET_DIR:-target/cross-routers}" "$@"
fi
rustup component list --installed 2>/dev/null | grep -q '^rust-src' ||
    rustup component add rust-src >/dev/null 2>&1 ||
    { echo "$t: rustup has no std for it and no rust-src to build one" >&2; exit 69; }
export RUSTC_BOOTSTRAP=1
exec cargo "$sub" -Zbuild-std=std,panic_abort --target "$t" --target-dir "${ROUTER_TARGET_DIR:-target/cross-routers}" "$@"
