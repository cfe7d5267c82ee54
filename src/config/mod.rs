//! Configuration: every file parsed into typed, checked values (DESIGN.md §4).
//!
//! `load` reads `etrnd.conf`, then `$MAILVAR/db/routes`, `db/localnames` and
//! `db/aliases`, and reports every problem as a `file:line: message` line. It does no
//! network I/O and never consults DNS.

pub mod cidr;
pub mod lex;
pub mod main_conf;
pub mod names;
pub mod routes;

use std::path::Path;

pub use lex::ConfigError;
pub use main_conf::MainConf;

use crate::route::{RouteTrie, Router};
use crate::smtp::Domain;

/// The whole configuration.
#[derive(Debug)]
pub struct Config {
    /// `etrnd.conf`.
    pub main: MainConf,
    /// Routes, local names and aliases.
    pub router: Router,
}

/// Reads and parses one `db/` file, collecting its errors. An absent optional file
/// is empty.
fn db_file<T: Default>(
    path: &Path,
    required: bool,
    parse: impl FnOnce(&Path, &str) -> Result<T, Vec<ConfigError>>,
    errors: &mut Vec<ConfigError>,
) -> T {
    let absent =
        matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let text = if absent && !required {
        Ok(String::new())
    } else {
        lex::read(path)
    };
    match text.map_err(|e| vec![e]).and_then(|t| parse(path, &t)) {
        Ok(v) => v,
        Err(mut e) => {
            errors.append(&mut e);
            T::default()
        }
    }
}

/// Loads and checks every configuration file. `db/routes` must exist; `db/localnames`
/// and `db/aliases` may be absent (empty).
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = lex::read(path).map_err(|e| vec![e])?;
    let main = MainConf::parse(path, &text)?;
    let mut errors = Vec::new();
    let db = main.mailvar.join("db");
    let entries = db_file(&db.join("routes"), true, routes::parse, &mut errors);
    let mut localnames = db_file(
        &db.join("localnames"),
        false,
        names::parse_localnames,
        &mut errors,
    );
    let aliases = db_file(
        &db.join("aliases"),
        false,
        names::parse_aliases,
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Ok(d) = Domain::parse(&main.hostname) {
        localnames.insert(d);
    }
    let router = Router {
        trie: RouteTrie::new(entries),
        localnames,
        aliases,
        protocols_smtp: main.protocols_smtp,
    };
    Ok(Config { main, router })
}
