//! What a message becomes on its way: the bounce (RFC 3464) made of a failure, and
//! the copy that leaves over SMTP (masquerading, 7-bit conversion).

pub mod bounce;
pub mod outgoing;
