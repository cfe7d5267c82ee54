//! Pickup of local submissions from the drop folder: at startup, whenever
//! `etrnd sendmail` wakes the daemon through its notify socket, and once a minute in
//! case a wake-up was lost (never more often, so a sleeping system stays asleep).

use std::time::{Duration, Instant};

use super::{unix_now, Daemon};
use crate::logging::sanitize;
use crate::spool::drop::Drop;

/// The safety-net scan interval.
pub const PICKUP_EVERY: Duration = Duration::from_secs(60);

impl Daemon {
    /// Queues every complete drop file.
    pub(super) fn pickup(&mut self, now: Instant) {
        self.next_pickup = now + PICKUP_EVERY;
        for path in self.spool.drop_files() {
            let data = match std::fs::read(&path) {
                Ok(d) => d,
                Err(e) => {
                    log::error!("pickup read-failed file={} error=\"{e}\"", path.display());
                    continue;
                }
            };
            let d = match Drop::decode(&data) {
                Ok(d) => d,
                Err(e) => {
                    log::warn!("pickup quarantined file={} reason=\"{e}\"", path.display());
                    self.spool.quarantine(&path);
                    continue;
                }
            };
            match self.queue_local(d.sender.clone(), &d.rcpts, &d.data, "LOCAL") {
                Ok((id, refused)) => {
                    log::info!(
                        "{id} pickup queued uid={} from={} nrcpt={}",
                        d.uid,
                        sanitize(crate::smtp::fmt_path(&d.sender).as_bytes()),
                        d.rcpts.len() - refused.len()
                    );
                    self.bounce_refused(&d, &refused);
                }
                Err(super::outbound::QueueError::Unroutable(refused)) => {
                    self.bounce_refused(&d, &refused);
                }
                Err(super::outbound::QueueError::Spool(e)) => {
                    // Keep the file: it is tried again at the next pickup.
                    log::error!("pickup spool-failed file={} error=\"{e}\"", path.display());
                    continue;
                }
            }
            if let Err(e) = std::fs::remove_file(&path) {
                log::error!("pickup unlink-failed file={} error=\"{e}\"", path.display());
            }
        }
    }

    /// Tells the sender about recipients that could not be routed at pickup.
    fn bounce_refused(&mut self, d: &Drop, refused: &[(crate::smtp::Mailbox, String)]) {
        if refused.is_empty() {
            return;
        }
        for (m, why) in refused {
            log::warn!(
                "pickup refused to=<{}> reason=\"{}\"",
                sanitize(m.to_string().as_bytes()),
                sanitize(why.as_bytes())
            );
        }
        let Some(sender) = d.sender.clone() else {
            return;
        };
        let env = crate::spool::Envelope {
            arrival: unix_now(),
            client: "-".into(),
            helo: self.config.main.hostname.clone(),
            protocol: "LOCAL".into(),
            eight_bit: false,
            sender: d.sender.clone(),
            recipients: Vec::new(),
        };
        let failures: Vec<crate::bounce::Failure> = refused
            .iter()
            .map(|(m, why)| crate::bounce::Failure {
                rcpt: m.clone(),
                status: "5.1.1".into(),
                diagnostic: why.clone(),
                remote_mta: None,
            })
            .collect();
        let dsn = crate::bounce::dsn(
            &self.config.main.hostname,
            crate::spool::MessageId(0),
            &env,
            &sender,
            &d.data,
            &failures,
            unix_now(),
        );
        let _ = self.queue_local(None, std::slice::from_ref(&sender), &dsn, "LOCAL");
    }
}
