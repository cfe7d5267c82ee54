//! What the daemon keeps on disk: the spool (queue files, journals, the hold store
//! and its index, the drop folder) and the notes on held destinations.

pub mod notes;
pub mod spool;
