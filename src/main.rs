//! The `etrnd` executable: it parses the command line, loads the configuration and
//! dispatches to the library (`etrnd::commands` and friends). Exit codes follow
//! sysexits(3).

use std::path::Path;
use std::process::exit;

use etrnd::cli::{self, exit as ex, Command};
use etrnd::commands;
use etrnd::config::{self, Config};

fn load_config(path: &Path) -> Config {
    match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            exit(ex::CONFIG);
        }
    }
}

fn main() {
    etrnd::sys::remember_exe();
    let args: Vec<String> = std::env::args().collect();
    let opts = match cli::parse(&args) {
        Ok(o) => o,
        Err((msg, code)) => {
            if code == ex::OK {
                println!("{msg}");
            } else {
                eprintln!("{msg}");
            }
            exit(code);
        }
    };
    // Paths in the configuration are relative to its directory; make that absolute
    // so that detaching (chdir /) changes nothing.
    if let Command::Secret(args) = &opts.command {
        // No configuration needed.
        exit(commands::secret::run(
            args,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout(),
        ));
    }
    let config_path = std::path::absolute(&opts.config).unwrap_or(opts.config.clone());
    if opts.command == Command::Config && !config_path.exists() {
        // Nothing installed yet: what etrnd would run with is the defaults.
        println!(
            "# {} does not exist: every value is the default",
            config_path.display()
        );
        print!(
            "{}",
            etrnd::config::show::render(&etrnd::config::MainConf::defaults(&config_path))
        );
        exit(ex::OK)
    }
    let cfg = load_config(&config_path);
    match &opts.command {
        Command::Check => {
            let problems = config::check_runtime(&cfg);
            for p in &problems {
                eprintln!("{p}");
            }
            exit(if problems.is_empty() {
                ex::OK
            } else {
                ex::CONFIG
            })
        }
        Command::Route { resolve, addrs } => exit(commands::route(&cfg, addrs, *resolve)),
        Command::Mailq { json } => exit(etrnd::tools::mailq::run(
            &cfg,
            *json,
            &mut std::io::stdout(),
        )),
        Command::Qshape => report(etrnd::tools::mailq::qshape(
            &cfg,
            etrnd::vocab::date::unix_now(),
        )),
        Command::Sendmail(args) => match etrnd::tools::sendmail::parse_args(args) {
            Ok(a) => exit(sendmail(&cfg, &a)),
            Err(e) => {
                eprintln!("sendmail: {e}");
                exit(ex::USAGE)
            }
        },
        Command::Flush(t) => exit(etrnd::tools::etrn_client::flush(
            &cfg,
            t.as_deref(),
            &mut std::io::stdout(),
        )),
        Command::Etrn {
            port,
            server,
            targets,
        } => exit(commands::etrn(&cfg, *port, server, targets)),
        Command::Atrn {
            port,
            server,
            domains,
        } => exit(etrnd::tools::etrn_client::atrn(
            &cfg,
            port.unwrap_or(etrnd::tools::etrn_client::ODMR_PORT),
            server,
            domains,
            &mut std::io::stdout(),
        )),
        Command::Link { op, name } => exit(etrnd::tools::etrn_client::link(
            &cfg,
            op,
            name.as_deref(),
            &mut std::io::stdout(),
        )),
        Command::Queue(args) => exit(etrnd::tools::queue::run(&cfg, args, &mut std::io::stdout())),
        Command::Config => {
            print!("{}", etrnd::config::show::render(&cfg.main));
            exit(ex::OK)
        }
        Command::Clients => report(etrnd::tools::clients::render(
            &cfg,
            etrnd::vocab::date::unix_now(),
        )),
        Command::Newaliases => exit(etrnd::tools::etrn_client::newaliases(
            &cfg,
            &mut std::io::stdout(),
        )),
        Command::Secret(_) => unreachable!("handled before the configuration is read"),
        Command::NoHostStatus(name) => {
            println!("{name}: etrnd keeps no host status: nothing to show or purge");
            exit(ex::OK)
        }
        Command::Daemon => commands::daemon::run(&opts, cfg, config_path),
    }
}

/// `sendmail` in each of its modes.
fn sendmail(cfg: &Config, a: &etrnd::tools::sendmail::Args) -> i32 {
    use etrnd::tools::sendmail::Mode;
    let mut out = std::io::stdout();
    match a.mode {
        Mode::Deliver => etrnd::tools::sendmail::run(
            cfg,
            a,
            &mut std::io::stdin().lock(),
            &mut std::io::stderr(),
        ),
        Mode::List => etrnd::tools::mailq::run(cfg, false, &mut out),
        Mode::Smtp => {
            etrnd::tools::sendmail_bs::session(cfg, &mut std::io::stdin().lock(), &mut out)
        }
        Mode::Init => etrnd::tools::etrn_client::newaliases(cfg, &mut out),
        Mode::Verify if a.rcpts.is_empty() => {
            eprintln!("sendmail: -bv needs an address");
            ex::USAGE
        }
        Mode::Verify => {
            // Printed as `route` does; the exit says whether a local submission to
            // every one of them would be taken.
            let code = commands::route(cfg, &a.rcpts, false);
            let all = a.rcpts.iter().all(|r| {
                etrnd::tools::sendmail::qualify(r, &cfg.main.hostname)
                    .is_ok_and(|m| cfg.router.destinations(&m, true).is_ok())
            });
            match (code, all) {
                (ex::OK, false) => 67, // EX_NOUSER
                (c, _) => c,
            }
        }
        Mode::Flush => etrnd::tools::etrn_client::flush(cfg, None, &mut out),
    }
}

/// Prints a listing read from the spool (`mailq`, `qshape`, `clients`) and exits.
fn report(r: Result<String, etrnd::store::spool::SpoolError>) -> ! {
    match r {
        Ok(text) => {
            print!("{text}");
            exit(ex::OK)
        }
        Err(e) => {
            eprintln!("etrnd: {e}");
            exit(ex::OSERR)
        }
    }
}
