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

fn optional(path: &Path) -> Result<String, ConfigError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        _ => lex::read(path),
    }
}

/// Loads and checks every configuration file. `db/routes` must exist; `db/localnames`
/// and `db/aliases` may be absent (empty).
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = lex::read(path).map_err(|e| vec![e])?;
    let main = MainConf::parse(path, &text)?;
    let mut errors = Vec::new();
    let db = main.mailvar.join("db");

    let routes_path = db.join("routes");
    let trie = match lex::read(&routes_path)
        .map_err(|e| vec![e])
        .and_then(|t| routes::parse(&routes_path, &t))
    {
        Ok(entries) => RouteTrie::new(entries),
        Err(mut e) => {
            errors.append(&mut e);
            RouteTrie::default()
        }
    };

    let ln_path = db.join("localnames");
    let mut localnames = match optional(&ln_path)
        .map_err(|e| vec![e])
        .and_then(|t| names::parse_localnames(&ln_path, &t))
    {
        Ok(s) => s,
        Err(mut e) => {
            errors.append(&mut e);
            Default::default()
        }
    };
    if let Ok(d) = Domain::parse(&main.hostname) {
        localnames.insert(d);
    }

    let al_path = db.join("aliases");
    let aliases = match optional(&al_path)
        .map_err(|e| vec![e])
        .and_then(|t| names::parse_aliases(&al_path, &t))
    {
        Ok(a) => a,
        Err(mut e) => {
            errors.append(&mut e);
            Default::default()
        }
    };

    if !errors.is_empty() {
        return Err(errors);
    }
    let router = Router {
        trie,
        localnames,
        aliases,
        protocols_smtp: main.protocols_smtp,
    };
    Ok(Config { main, router })
}
