#!/bin/sh
# router-cargo.sh TRIPLE CARGO-ARGS...: cargo for a router's static musl target
# (armv7, 32-bit MIPS of either byte order, aarch64, ...), built in
# target/cross-routers. Zig's `cc` (PyPI's ziglang, installed with pip if missing)
# is the C compiler (ring's C), the linker and the musl; the target's std is
# rustup's where it ships one, else built from rust-src (-Zbuild-std, allowed on
# this toolchain by RUSTC_BOOTSTRAP). Exits 69 when neither zig nor a std can be
# had, with the reason.
set -u
[ $# -ge 2 ] || { echo "usage: $0 TRIPLE CARGO-ARGS..." >&2; exit 64; }
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
find_zig() {
    python3 -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))' 2>/dev/null
}
zig=$(find_zig)
if [ -z "$zig" ]; then
    python3 -m pip install -q ziglang >/dev/null 2>&1
    zig=$(find_zig)
fi
[ -n "$zig" ] || { echo "$t: no zig (python3 -m pip install ziglang)" >&2; exit 69; }
tools=$(pwd)/target/cross-tools
mkdir -p "$tools"
# cc-rs passes rustc's --target=TRIPLE, which is not Zig's name: it is dropped.
cat >"$tools/$t-cc" <<EOF
#!/bin/sh
for a do
    shift
    case "\$a" in --target=*) ;; *) set -- "\$@" "\$a" ;; esac
done
exec "$zig" cc -target $zt "\$@"
EOF
chmod +x "$tools/$t-cc"
u=$(echo "$t" | tr - _)
U=$(echo "$u" | tr '[:lower:]' '[:upper:]')
export "CC_$u=$tools/$t-cc" "CARGO_TARGET_${U}_LINKER=$tools/$t-cc"
# Zig links its own musl and start files, so rustup's are not linked in.
export RUSTFLAGS="-C link-self-contained=no -C target-feature=+crt-static"
if rustup target list --installed 2>/dev/null | grep -qx "$t" ||
    rustup target add "$t" >/dev/null 2>&1; then
    exec cargo "$@" --target "$t" --target-dir target/cross-routers
fi
rustup component list --installed 2>/dev/null | grep -q '^rust-src' ||
    rustup component add rust-src >/dev/null 2>&1 ||
    { echo "$t: rustup has no std for it and no rust-src to build one" >&2; exit 69; }
export RUSTC_BOOTSTRAP=1
exec cargo "$@" -Zbuild-std=std,panic_abort --target "$t" \
    --target-dir target/cross-routers
