//! MD5 (RFC 1321) and HMAC-MD5 (RFC 2104), for CRAM-MD5 (RFC 2195) only. Written
//! here because CRAM-MD5's stored secrets are MD5 *chaining states* (the HMAC
//! "contexts" after the key blocks), which no maintained hash crate hands out; MD5
//! protects nothing else in etrnd.

const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15,
    21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

/// The initial chaining state.
pub const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

fn k(i: usize) -> u32 {
    // floor(abs(sin(i + 1)) * 2^32), as RFC 1321 §3.4 defines the table.
    ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32
}

/// Absorbs one 64-octet block into `state`.
pub fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut m = [0u32; 16];
    for (i, w) in m.iter_mut().enumerate() {
        *w = u32::from_le_bytes([
            block[i * 4],
            block[i * 4 + 1],
            block[i * 4 + 2],
            block[i * 4 + 3],
        ]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for (i, &shift) in S.iter().enumerate() {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let t = d;
        d = c;
        c = b;
        b = b.wrapping_add(
            a.wrapping_add(f)
                .wrapping_add(k(i))
                .wrapping_add(m[g])
                .rotate_left(shift),
        );
        a = t;
    }
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

/// Finishes a hash that started from `state` after `done` octets were absorbed (a
/// multiple of 64), with `rest` still to come.
pub fn finish_from(mut state: [u32; 4], done: u64, rest: &[u8]) -> [u8; 16] {
    let total = done + rest.len() as u64;
    let mut tail = rest.to_vec();
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&(total.wrapping_mul(8)).to_le_bytes());
    for block in tail.chunks_exact(64) {
        compress(&mut state, block.try_into().expect("64-octet chunk"));
    }
    let mut out = [0u8; 16];
    for (i, w) in state.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// MD5 of `data`.
pub fn md5(data: &[u8]) -> [u8; 16] {
    let mut state = INIT;
    let whole = data.len() / 64 * 64;
    for block in data[..whole].chunks_exact(64) {
        compress(&mut state, block.try_into().expect("64-octet chunk"));
    }
    finish_from(state, whole as u64, &data[whole..])
}

/// The two HMAC-MD5 contexts of `key` (RFC 2195 §4): the states after the inner
/// (key ⊕ ipad) and outer (key ⊕ opad) blocks.
pub fn hmac_contexts(key: &[u8]) -> ([u32; 4], [u32; 4]) {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&md5(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = INIT;
    let mut outer = INIT;
    let mut ipad = [0u8; 64];
    let mut opad = [0u8; 64];
    for i in 0..64 {
        ipad[i] = k[i] ^ 0x36;
        opad[i] = k[i] ^ 0x5c;
    }
    compress(&mut inner, &ipad);
    compress(&mut outer, &opad);
    (inner, outer)
}

/// HMAC-MD5 of `msg` from precomputed contexts.
pub fn hmac_from_contexts(inner: [u32; 4], outer: [u32; 4], msg: &[u8]) -> [u8; 16] {
    let whole = msg.len() / 64 * 64;
    let mut state = inner;
    for block in msg[..whole].chunks_exact(64) {
        compress(&mut state, block.try_into().expect("64-octet chunk"));
    }
    let ih = finish_from(state, 64 + whole as u64, &msg[whole..]);
    finish_from(outer, 64, &ih)
}

/// HMAC-MD5 of `msg` under `key`.
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 16] {
    let (i, o) = hmac_contexts(key);
    hmac_from_contexts(i, o, msg)
}

/// The `{CRAM-MD5}` form of the contexts: 64 lower-case hex digits, each state's
/// words little-endian (what Dovecot's `doveadm pw -s CRAM-MD5` writes).
pub fn contexts_hex(c: &([u32; 4], [u32; 4])) -> String {
    let mut s = String::with_capacity(64);
    for w in c.0.iter().chain(c.1.iter()) {
        for b in w.to_le_bytes() {
            s.push_str(&format!("{b:02x}"));
        }
    }
    s
}

/// Parses [`contexts_hex`]'s form.
pub fn parse_contexts(hex: &str) -> Option<([u32; 4], [u32; 4])> {
    let bytes = super::base64::hex_decode(hex)?;
    if bytes.len() != 32 {
        return None;
    }
    let w = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Some(([w(0), w(4), w(8), w(12)], [w(16), w(20), w(24), w(28)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn rfc1321_test_suite() {
        let cases: [(&str, &str); 7] = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(&md5(input.as_bytes())), want, "{input:?}");
        }
    }

    #[test]
    fn rfc2104_and_rfc2195_vectors() {
        // RFC 2104 appendix, test 2.
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        // RFC 2195 §2: tim / tanstaaftanstaaf.
        let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(
            hex(&hmac(b"tanstaaftanstaaf", challenge)),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
        // A key longer than a block is hashed first (RFC 2104 §2; RFC 2202 test 6).
        assert_eq!(
            hex(&hmac(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"
        );
    }

    #[test]
    fn stored_contexts_round_trip_and_answer_like_the_key() {
        let c = hmac_contexts(b"tanstaaftanstaaf");
        let text = contexts_hex(&c);
        assert_eq!(text.len(), 64);
        let back = parse_contexts(&text).unwrap();
        let long = [b'x'; 200];
        for msg in [&b"<1.2@h>"[..], &long[..]] {
            assert_eq!(
                hmac_from_contexts(back.0, back.1, msg),
                hmac(b"tanstaaftanstaaf", msg)
            );
        }
        assert!(parse_contexts("zz").is_none());
    }
}
