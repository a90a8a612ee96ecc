//! The `huiying` command: the whole pipeline in one process (`huiying up`), one
//! service, or the mail tools.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use huiying::cli::{ConfigArgs, load_config, run_service};
use huiying::service::Service;

#[derive(Parser)]
#[command(version, about = "huiying (绘影): self-hosted image generation on NATS JetStream")]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run all five services, starting a nats-server when none answers at [nats] url.
    Up,
    #[command(name = "ingest", about = Service::Ingest.about())]
    Ingest,
    #[command(name = "generator", about = Service::Generator.about())]
    Generator,
    #[command(name = "store", about = Service::Store.about())]
    Store,
    #[command(name = "mailer", about = Service::Mailer.about())]
    Mailer,
    #[command(name = "webhook", about = Service::Webhook.about())]
    Webhook,
    /// Check the mail setup, list failed notifications, send them again.
    #[command(subcommand)]
    Mail(MailCommand),
    /// The history of records: `huiying records import <dump.sql>` brings in the original
    /// service's Cloudflare D1 export.
    #[command(subcommand)]
    Records(RecordsCommand),
    /// A picture's AI-content labels (GB 45438-2025): `huiying labels check <file>`.
    #[command(subcommand)]
    Labels(LabelsCommand),
    /// Queue a picture straight on NATS, as any client could (--wait prints its link).
    Submit(huiying::submit::SubmitArgs),
    /// See webhook endpoints and deliveries, send deliveries again, try an endpoint.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// The configuration: `huiying config check` loads it as the services do and tries
    /// each dependency it names (NATS, SMTP, the database, R2 / S3, model keys).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// What paid models cost: per day, model or key, from the spend ledger (as GET /usage).
    Usage(huiying::usage::UsageArgs),
    /// Print the nats.conf built into this binary (on a cluster node without the
    /// repository: `huiying nats-conf > nats.conf`, then edit it as docs/cluster.md says).
    #[command(name = "nats-conf")]
    NatsConf,
    /// Load-test a pipeline of its own (nats-server and the services as processes,
    /// placeholder model, mail to the outbox): throughput, latency per stage, memory.
    Load(huiying::load::LoadArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// One line per dependency, ok or why not; exits 1 when any failed.
    Check,
}

#[derive(Subcommand)]
enum RecordsCommand {
    /// Import a `wrangler d1 export` of the original service's database (idempotent).
    Import(huiying::store::import::ImportArgs),
    /// Delete records (by number or job id) with their pictures everywhere, as an admin
    /// key's DELETE /records/{id} does.
    Delete {
        /// Record numbers or job ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Subcommand)]
enum LabelsCommand {
    /// Print the labels a file carries: its TC260 AIGC metadata, whether that still
    /// matches the pixels, the IPTC source type, the visible label as recorded. Exits 0
    /// when the file has the implicit label, 1 when it has none, 2 when it is unreadable.
    Check {
        file: std::path::PathBuf,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// The configured endpoints and their state.
    List,
    /// Deliveries and their attempts.
    Deliveries {
        /// Only those that failed for good.
        #[arg(long)]
        failed: bool,
        /// Only those touched since (2026-12-01 or 2026-12-01T08:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
    /// Send deliveries again, with the same webhook-id.
    Replay {
        /// Delivery ids (msg_...), as `deliveries` lists them.
        ids: Vec<String>,
        /// Every failed delivery (with --since).
        #[arg(long, requires = "since")]
        failed: bool,
        #[arg(long)]
        since: Option<String>,
    },
    /// Send a signed test event to an endpoint now.
    Test { endpoint: String },
    /// Enable an endpoint that was disabled.
    Enable { endpoint: String },
}

#[derive(Subcommand)]
enum MailCommand {
    /// Send a test mail with the current [smtp] settings and explain any failure.
    Test,
    /// List notifications that were given up or are still being retried.
    Failed,
    /// Send the notifications of these jobs again.
    /// List the addresses no notification goes to (unsubscribed, or refused for good).
    Suppressed,
    /// Send notifications to this address again.
    Unsuppress { address: String },
    /// Check the DNS records receivers look at (SPF, DKIM, DMARC) and say what to publish.
    Doctor,
    /// Write a new DKIM private key and print the DNS record to publish.
    DkimKeygen {
        /// rsa (2048 bits, verified everywhere) or ed25519.
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: huiying::smtp::dkim::KeyKind,
        /// Where to write the key (PEM); default: [smtp.dkim] private_key_file, else dkim.pem.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    Resend {
        /// Job ids (as shown by `huiying mail failed`).
        #[arg(required = true)]
        job_ids: Vec<String>,
        /// Also send those that were sent already.
        #[arg(long)]
        force: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = &cli.config;
    match cli.command {
        Command::Up => run_service("huiying up", args, huiying::up::run).await,
        Command::NatsConf => {
            print!("{}", huiying::up::BUILT_IN_NATS_CONF);
            ExitCode::SUCCESS
        }
        Command::Ingest => service(args, Service::Ingest).await,
        Command::Generator => service(args, Service::Generator).await,
        Command::Store => service(args, Service::Store).await,
        Command::Mailer => service(args, Service::Mailer).await,
        Command::Webhook => service(args, Service::Webhook).await,
        Command::Webhooks(command) => webhooks(args, command).await,
        Command::Records(RecordsCommand::Import(import)) => match load_config(args, "huiying records import") {
            Ok(config) => print_lines("huiying records import", huiying::store::import::run(&config, import).await),
            Err(code) => code,
        },
        Command::Records(RecordsCommand::Delete { ids }) => match load_config(args, "huiying records delete") {
            Ok(config) => print_lines("huiying records delete", huiying::ingest::delete::run(&config, &ids).await),
            Err(code) => code,
        },
        Command::Labels(LabelsCommand::Check { file, json }) => check_labels(&file, json),
        Command::Submit(submit) => match load_config(args, "huiying submit") {
            Ok(config) => {
                print_lines("huiying submit", huiying::submit::run(&config, submit).await.map(|line| vec![line]))
            }
            Err(code) => code,
        },
        Command::Mail(command) => mail(args, command).await,
        Command::Config(ConfigCommand::Check) => match load_config(args, "huiying config check") {
            Ok(config) => {
                let (lines, all_ok) = huiying::check::run(&config).await;
                lines.iter().for_each(|line| println!("{line}"));
                if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(code) => code,
        },
        Command::Usage(usage) => match load_config(args, "huiying usage") {
            Ok(config) => print_lines("huiying usage", huiying::usage::run(&config, &usage).await),
            Err(code) => code,
        },
        Command::Load(load) => match load_config(args, "huiying load") {
            Ok(config) => match huiying::load::run(config, load).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("huiying load: {error:#}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
    }
}

fn check_labels(file: &std::path::Path, json: bool) -> ExitCode {
    let report = std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|bytes| huiying::labels::check::check(&bytes).map_err(|e| e.to_string()));
    match report {
        Ok(report) => {
            match json {
                true => println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize")),
                false => println!("{}\n{report}", file.display()),
            }
            if report.has_implicit_label() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(error) => {
            eprintln!("huiying labels check: {}: {error}", file.display());
            ExitCode::from(2)
        }
    }
}

async fn service(args: &ConfigArgs, service: Service) -> ExitCode {
    run_service(service.name(), args, |config, shutdown| huiying::service::run(service, config, shutdown)).await
}

async fn webhooks(args: &ConfigArgs, command: WebhooksCommand) -> ExitCode {
    use huiying::webhook::commands;
    let program = "huiying webhooks";
    let config = match load_config(args, program) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let since = |text: Option<String>| text.map(|t| commands::parse_since(&t)).transpose();
    let result = match command {
        WebhooksCommand::List => commands::list(&config).await,
        WebhooksCommand::Deliveries { failed, since: text } => match since(text) {
            Ok(since) => commands::deliveries(&config, failed, since).await,
            Err(error) => Err(error),
        },
        WebhooksCommand::Replay { ids, failed: true, since: text } if ids.is_empty() => match since(text) {
            Ok(Some(since)) => commands::replay_failed(&config, since).await,
            Ok(None) => Err(anyhow::anyhow!("--failed needs --since")),
            Err(error) => Err(error),
        },
        WebhooksCommand::Replay { ids, .. } if !ids.is_empty() => commands::replay(&config, &ids).await,
        WebhooksCommand::Replay { .. } => Err(anyhow::anyhow!("name delivery ids, or use --failed --since T")),
        WebhooksCommand::Test { endpoint } => commands::test(&config, &endpoint).await.map(|line| vec![line]),
        WebhooksCommand::Enable { endpoint } => commands::enable(&config, &endpoint).await.map(|line| vec![line]),
    };
    print_lines(program, result)
}

fn print_lines(program: &str, result: anyhow::Result<Vec<String>>) -> ExitCode {
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{program}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn mail(args: &ConfigArgs, command: MailCommand) -> ExitCode {
    let program = "huiying mail";
    let config = match load_config(args, program) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let MailCommand::Doctor = command {
        return match huiying::mailer::doctor::run(&config).await {
            Ok((lines, all_ok)) => {
                lines.iter().for_each(|line| println!("{line}"));
                if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(error) => print_lines(program, Err(error)),
        };
    }
    use huiying::mailer::commands;
    let result = match command {
        MailCommand::Test => commands::test(&config).await.map(|line| vec![line]),
        MailCommand::Failed => commands::failed(&config)
            .await
            .map(|lines| if lines.is_empty() { vec!["no failed notifications".to_string()] } else { lines }),
        MailCommand::Resend { job_ids, force } => commands::resend(&config, &job_ids, force).await,
        MailCommand::Suppressed => commands::suppressed(&config).await,
        MailCommand::Unsuppress { address } => commands::unsuppress(&config, &address).await,
        MailCommand::Doctor => unreachable!("answered above"),
        MailCommand::DkimKeygen { algorithm, out } => commands::dkim_keygen(&config, algorithm, out),
    };
    print_lines(program, result)
}
