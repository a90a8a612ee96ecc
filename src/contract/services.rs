//! The five services by name, in one place: the subcommand (`huiying store`), the program
//! of its own (`huiying-store`), the name it connects to NATS and answers pings as, its
//! NATS user in `nats.conf`, and the line `--help` shows.

/// One of huiying's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Ingest,
    Generator,
    Store,
    Mailer,
    Webhook,
}

impl Service {
    /// In the order a job travels.
    pub const ALL: [Service; 5] =
        [Service::Ingest, Service::Generator, Service::Store, Service::Mailer, Service::Webhook];

    /// Its name: the subcommand, the log and metrics name, and its NATS user.
    pub fn name(self) -> &'static str {
        match self {
            Service::Ingest => "ingest",
            Service::Generator => "generator",
            Service::Store => "store",
            Service::Mailer => "mailer",
            Service::Webhook => "webhook",
        }
    }

    /// Its program of its own, and the name it connects to NATS and answers pings as.
    pub fn program(self) -> &'static str {
        match self {
            Service::Ingest => "huiying-ingest",
            Service::Generator => "huiying-generator",
            Service::Store => "huiying-store",
            Service::Mailer => "huiying-mailer",
            Service::Webhook => "huiying-webhook",
        }
    }

    /// What it does, in one line (`--help`, and its ping's description).
    pub fn about(self) -> &'static str {
        match self {
            Service::Ingest => "huiying ingest: the HTTP API, the web page and job status",
            Service::Generator => "huiying generator: draws requested pictures with an image model",
            Service::Store => "huiying store: processes, labels and stores pictures, keeps their records",
            Service::Mailer => "huiying mailer: notification mails for finished and failed jobs",
            Service::Webhook => "huiying webhook: signed webhook deliveries, retried on a schedule",
        }
    }

    /// The NATS service-ping subject it answers while it runs; ingest's `/health` asks
    /// the others (ingest itself is the one asking).
    pub fn ping_subject(self) -> Option<&'static str> {
        match self {
            Service::Ingest => None,
            Service::Generator => Some("$SRV.PING.huiying-generator"),
            Service::Store => Some("$SRV.PING.huiying-store"),
            Service::Mailer => Some("$SRV.PING.huiying-mailer"),
            Service::Webhook => Some("$SRV.PING.huiying-webhook"),
        }
    }

    /// The NATS user `nats.conf` gives it.
    pub fn nats_user(self) -> &'static str {
        self.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_a_service_is_derived_from_the_same_word() {
        for service in Service::ALL {
            assert_eq!(service.program(), format!("huiying-{}", service.name()));
            if let Some(subject) = service.ping_subject() {
                assert_eq!(subject, format!("$SRV.PING.{}", service.program()));
            }
            assert!(service.about().starts_with(&format!("huiying {}:", service.name())));
        }
    }
}
