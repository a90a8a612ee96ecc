//! Launching the nats-server `huiying up` (and `huiying load`) runs on when none answers:
//! the project's `nats.conf` (or the one built in), a data folder of its own, a port
//! (the configured one when free), and a login per service.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::bus::{self, MIN_SERVER_VERSION};
use crate::config::{Config, Secret};
use crate::service::{ADMIN_USER, NATS_USERS};

/// Passwords made at start for the users of nats.conf; nats-server reads them from
/// `HUIYING_NATS_<USER>_PASSWORD`.
pub struct NatsLogins(Vec<(&'static str, Secret)>);

impl NatsLogins {
    pub(crate) fn random() -> Self {
        // nats-server parses an environment variable as a config value: starting with
        // letters keeps 64 random hex digits a string (a leading digit would be a number).
        let password = || Secret::new(format!("hy{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()));
        Self(NATS_USERS.iter().map(|&user| (user, password())).collect())
    }

    pub fn password(&self, user: &str) -> Secret {
        self.0.iter().find(|(name, _)| *name == user).map(|(_, password)| password.clone()).unwrap_or_default()
    }

    /// The environment variable nats.conf reads `user`'s password from.
    pub fn env_var(user: &str) -> String {
        format!("HUIYING_NATS_{}_PASSWORD", user.to_ascii_uppercase())
    }

    /// Hands every password to a nats-server about to be started with nats.conf.
    pub(crate) fn pass_to(&self, nats_server: &mut Command) {
        for (user, password) in &self.0 {
            nats_server.env(Self::env_var(user), password.expose());
        }
    }
}

/// The project's nats.conf, for folders that have none (`huiying nats-conf` prints it).
pub const BUILT_IN_NATS_CONF: &str = include_str!("../../nats.conf");

/// `[nats] server_config` when it is there; when it is the default `nats.conf` and this
/// folder has none, the built-in one, written into `dir` (so a copied binary still gives
/// each service its own login).
pub fn nats_conf(config: &Config, dir: &Path) -> anyhow::Result<PathBuf> {
    let configured = &config.nats.server_config;
    if configured.is_file() || configured != Path::new("nats.conf") {
        return Ok(configured.clone());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let built_in = dir.join("nats.conf");
    std::fs::write(&built_in, BUILT_IN_NATS_CONF).with_context(|| format!("writing {}", built_in.display()))?;
    Ok(built_in)
}

/// The built-in nats.conf for one node of a cluster on loopback (`huiying load
/// --cluster`, the cluster tests): its own `server_name`, and the commented `cluster {}`
/// block switched on with this node's route port and every node's route.
pub fn cluster_node_conf(name: &str, route_port: u16, all_route_ports: &[u16]) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in BUILT_IN_NATS_CONF.lines() {
        let uncommented = line.strip_prefix("# ").unwrap_or(line);
        if line.starts_with("server_name:") {
            out += &format!("server_name: {name}\n");
        } else if line == "# cluster {" {
            in_block = true;
            out += "cluster {\n";
        } else if in_block && uncommented.trim_start().starts_with("listen:") {
            out += &format!("  listen: 127.0.0.1:{route_port}\n");
        } else if in_block && uncommented.trim_start().starts_with("nats-route://") {
            // The example's routes give way to this machine's.
            if line.contains("node-a") {
                for port in all_route_ports {
                    out += &format!("    nats-route://127.0.0.1:{port}\n");
                }
            }
        } else if in_block {
            out += uncommented;
            out.push('\n');
            in_block = line != "# }";
        } else {
            out += line;
            out.push('\n');
        }
    }
    out
}

/// A nats-server `huiying up` started (stopped when dropped).
pub(super) struct StartedNats {
    pub(super) process: Child,
    pub(super) logins: Option<NatsLogins>,
}

/// Makes sure a suitable NATS answers at `config.nats.url`, starting one if needed.
/// Returns the started server (if any) and a line saying which NATS is used.
pub(super) async fn ensure_nats(config: &mut Config) -> anyhow::Result<(Option<StartedNats>, String)> {
    let url = config.nats.url.to_string();
    // With a list (a cluster), the first server is the one started when none answers.
    let (host, port) = host_and_port(config.nats.url.first())?;
    let found_old = match bus::try_connect(&config.nats, "huiying-up").await {
        Ok(client) => {
            let version = client.server_info().version;
            if bus::check_server_version(&url, &version).is_ok() {
                return Ok((None, format!("{url} (nats-server {version}, already running)")));
            }
            Some(version)
        }
        Err(_) => None,
    };
    if !is_local(&host) {
        match found_old {
            Some(version) => {
                bail!("nats-server at {url} is {version}; huiying needs nats-server 2.10 or newer")
            }
            None => bail!(
                "cannot reach NATS at {url} ([nats] url); start it, or point [nats] url at a local address so huiying up can start one"
            ),
        }
    }
    let program = find_nats_server(&config.nats.server_bin)?;
    let port = if found_old.is_none() && port_is_free(port) { port } else { free_port()? };
    std::fs::create_dir_all(".huiying").context("creating .huiying")?;
    let log_path = PathBuf::from(".huiying/nats-server.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;

    let mut command = Command::new(&program.path);
    // No nats.conf in this folder (a binary copied elsewhere, an old service's folder): the
    // one built into the binary, written where the user can read it, so the services still
    // get a login each.
    let chosen = nats_conf(config, Path::new(".huiying"))?;
    if chosen != config.nats.server_config {
        println!("No nats.conf here: using the built-in one, written to {}", chosen.display());
        config.nats.server_config = chosen;
    }
    // The store folder is the config file's `store_dir`; without the file, our default.
    let (store_dir, logins) = if config.nats.server_config.is_file() {
        command.arg("-c").arg(&config.nats.server_config);
        let logins = NatsLogins::random();
        logins.pass_to(&mut command);
        (format!("store_dir of {}", config.nats.server_config.display()), Some(logins))
    } else {
        command.args(["-js", "-sd", ".huiying/nats"]);
        (".huiying/nats".to_string(), None)
    };
    command
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let mut child = command.spawn().with_context(|| format!("starting {}", program.path.display()))?;

    let new_url = format!("nats://127.0.0.1:{port}");
    config.nats.url = new_url.parse().map_err(anyhow::Error::msg)?;
    if let Some(logins) = &logins {
        config.nats.user = ADMIN_USER.into();
        config.nats.password = logins.password(ADMIN_USER);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if bus::try_connect(&config.nats, "huiying-up").await.is_ok() {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!("nats-server exited ({status}) at start; see {}", log_path.display());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("nats-server did not answer at {new_url} within 15 s; see {}", log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut note = format!(
        "{new_url} (started by huiying: nats-server {} from {}, data in {})",
        program.version,
        program.path.display(),
        store_dir
    );
    if let Some(old) = found_old {
        note.push_str(&format!("; the server at {url} is {old}, too old for huiying (needs 2.10+)"));
    }
    if let Some(logins) = &logins {
        write_admin_env(&new_url, logins)?;
        note.push_str(&format!("; one login per service, admin login in {ADMIN_ENV_FILE}"));
    }
    Ok((Some(StartedNats { process: child, logins }), note))
}

/// Where `huiying up` leaves the admin login of the nats-server it started, for the
/// `huiying mail` commands and the nats CLI (`set -a; . .huiying/nats.env; set +a`).
pub const ADMIN_ENV_FILE: &str = ".huiying/nats.env";

fn write_admin_env(url: &str, logins: &NatsLogins) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(ADMIN_ENV_FILE).with_context(|| format!("writing {ADMIN_ENV_FILE}"))?;
    let password = logins.password(ADMIN_USER);
    writeln!(file, "# NATS login of the nats-server `huiying up` started; valid until it stops.")?;
    writeln!(file, "NATS_URL={url}\nNATS_USER=admin\nNATS_PASSWORD={}", password.expose())?;
    Ok(())
}

/// A nats-server program and its version.
pub struct NatsServerProgram {
    pub path: PathBuf,
    pub version: String,
}

/// `[nats] server_bin`, else `.huiying/bin/nats-server` (see scripts/install-nats-server.sh),
/// else `nats-server` on PATH; the first that runs and is new enough.
pub fn find_nats_server(configured: &str) -> anyhow::Result<NatsServerProgram> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if !configured.is_empty() {
        candidates.push(configured.into());
    }
    candidates.push(".huiying/bin/nats-server".into());
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("nats-server")));
    }
    let mut too_old = Vec::new();
    for path in candidates.iter().filter(|p| p.is_file()) {
        let Some(version) = nats_server_version(path) else {
            continue;
        };
        if bus::check_server_version("", &version).is_ok() {
            return Ok(NatsServerProgram { path: path.clone(), version });
        }
        too_old.push(format!("{version} at {}", path.display()));
    }
    let found =
        if too_old.is_empty() { "none found".to_string() } else { format!("found only {}", too_old.join(", ")) };
    bail!(
        "huiying up needs nats-server {}.{} or newer ({found}). Install it with scripts/install-nats-server.sh \
         (puts Debian trixie's package in .huiying/bin), or your package manager, or set [nats] server_bin / NATS_SERVER_BIN",
        MIN_SERVER_VERSION.0,
        MIN_SERVER_VERSION.1
    )
}

/// Reads `nats-server: v2.10.27` from `--version`.
fn nats_server_version(path: &Path) -> Option<String> {
    let output = std::process::Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().find(|w| w.starts_with('v')).map(|v| v.trim_start_matches('v').to_string())
}

fn host_and_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.split("://").last().unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((host, port)) => {
            Ok((host.to_string(), port.parse().context("bad configuration: nats.url has a bad port")?))
        }
        None => Ok((rest.to_string(), 4222)),
    }
}

fn is_local(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]" | "0.0.0.0")
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_node_gets_its_name_and_the_routes_of_all() {
        let conf = cluster_node_conf("node-b", 6302, &[6301, 6302, 6303]);
        assert!(conf.contains("server_name: node-b\n"));
        assert!(conf.contains("cluster {\n  name: huiying\n  listen: 127.0.0.1:6302\n"), "{conf}");
        assert!(conf.contains("nats-route://127.0.0.1:6301\n    nats-route://127.0.0.1:6302\n"), "{conf}");
        assert!(!conf.contains("node-a.internal"));
        assert!(conf.contains("authorization {"), "the logins stay");
    }

    #[test]
    fn the_nats_url_gives_host_and_port() {
        assert_eq!(host_and_port("nats://127.0.0.1:4222").unwrap(), ("127.0.0.1".into(), 4222));
        assert_eq!(host_and_port("nats://user:pw@example.com:4333").unwrap(), ("example.com".into(), 4333));
        assert_eq!(host_and_port("localhost").unwrap(), ("localhost".into(), 4222));
    }
}
