//! What the session fuzz targets share: a small configuration with `routes`.
use std::path::Path;
use std::time::Duration;

use etrnd::config::{main_conf::MainConf, routes, Config};
use etrnd::route::{RouteTrie, Router};
use etrnd::smtp::Domain;

pub fn config(route_text: &str) -> Config {
    let mut main = MainConf::defaults(Path::new("/fuzz/etrnd.conf"));
    main.hostname = "mx.fuzz.example".into();
    main.greet_pause = Duration::ZERO;
    main.max_message_size = 4096;
    let entries = routes::parse(Path::new("r"), route_text).unwrap();
    Config {
        main,
        router: Router {
            trie: RouteTrie::new(entries),
            localnames: [Domain::parse("fuzz.example").unwrap()].into_iter().collect(),
            aliases: Default::default(),
            protocols_smtp: false,
            accounts: etrnd::accounts::Accounts::from_list(&[("root", 0, 0, "/root")]),
        },
        resolve: etrnd::dns::ResolveConf {
            order: vec![etrnd::config::main_conf::HostSource::Files],
            hosts: Default::default(),
            resolv: Default::default(),
        },
        sched: etrnd::config::scheduler::SchedulerConf::builtin("/log"),
        generic: Default::default(),
        recipients: Default::default(),
    }
}
