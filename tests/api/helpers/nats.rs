//! A nats-server of the test's own, and the NATS logins of nats.conf.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use huiying::config::{Config, Secret};
use tempfile::TempDir;

use super::*;

/// A nats-server 2.10+ of the test's own, killed on drop.
pub struct NatsServer {
    process: Option<Child>,
    pub url: String,
    /// Its `server_name` (nodes of a cluster each have their own).
    pub name: String,
    port: u16,
    /// Where it listens: loopback, or its host's address when it runs in a [`Hosts`] namespace.
    address: String,
    netns: Option<String>,
    store: TempDir,
    config: PathBuf,
}

/// The nats-server program: `HUIYING_TEST_NATS_SERVER`, else `.huiying/bin/nats-server`
/// (scripts/install-nats-server.sh puts it there), else the one on PATH if 2.10+.
pub fn nats_server_program() -> PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let mut candidates = vec![];
            if let Ok(path) = std::env::var("HUIYING_TEST_NATS_SERVER") {
                candidates.push(PathBuf::from(path));
            }
            candidates.push(Path::new(REPO).join(".huiying/bin/nats-server"));
            candidates.push(PathBuf::from("nats-server"));
            for candidate in candidates {
                let Ok(output) = Command::new(&candidate).arg("--version").output() else {
                    continue;
                };
                let text = String::from_utf8_lossy(&output.stdout).to_string();
                let version = text.split_whitespace().find(|w| w.starts_with('v')).unwrap_or("v0").to_string();
                if huiying::bus::check_server_version("", &version).is_ok() {
                    return candidate;
                }
            }
            panic!("the tests need nats-server 2.10 or newer: run scripts/install-nats-server.sh");
        })
        .clone()
}

impl NatsServer {
    /// A server with the project's own nats.conf, so the tests check it (and its logins) too.
    pub async fn start() -> Self {
        Self::start_with(&Path::new(REPO).join("nats.conf")).await
    }

    /// A server with another configuration file.
    pub async fn start_with(config: &Path) -> Self {
        let mut server = Self {
            process: None,
            url: String::new(),
            name: "huiying".into(),
            port: free_port(),
            address: "127.0.0.1".into(),
            netns: None,
            store: TempDir::new().unwrap(),
            config: config.to_path_buf(),
        };
        server.restart().await;
        server
    }

    /// A node that is not started yet, with the configuration text `conf`.
    fn node(name: &str, conf: &str) -> Self {
        let store = TempDir::new().unwrap();
        let config = store.path().join("nats.conf");
        std::fs::write(&config, conf).unwrap();
        Self {
            process: None,
            url: String::new(),
            name: name.into(),
            port: free_port(),
            address: "127.0.0.1".into(),
            netns: None,
            store,
            config,
        }
    }

    /// Starts the server (again) on its port with its JetStream folder.
    pub async fn restart(&mut self) {
        assert!(self.process.is_none(), "nats-server is already running");
        let (port, store) = (self.port, &self.store);
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(nats_server_program());
                command
            }
            None => Command::new(nats_server_program()),
        };
        for user in huiying::service::NATS_USERS.iter().chain(&["subscriber"]) {
            command.env(huiying::up::NatsLogins::env_var(user), nats_password(user));
        }
        let process = command
            .arg("-c")
            .arg(&self.config)
            .args(["-a", &self.address, "-p", &port.to_string()])
            .current_dir(store.path())
            .stdout(Stdio::null())
            // Permission violations show up here; HUIYING_TEST_NATS_LOG keeps it for a look.
            .stderr(match std::env::var_os("HUIYING_TEST_NATS_LOG") {
                Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .expect("starting nats-server");
        let url = format!("nats://{}:{port}", self.address);
        let probe = url.clone();
        // A cluster node recovering its JetStream store on a busy two-core machine has
        // taken over 15 s; the wait is for a server that never comes up, not a slow one.
        wait_for("nats-server to accept connections", Duration::from_secs(60), || {
            let url = probe.clone();
            async move { connect_as(&url, "admin").await.ok() }
        })
        .await;
        self.process = Some(process);
        self.url = url;
    }
}

/// Three nats-servers on loopback forming one JetStream cluster, each with the project's
/// nats.conf and its `cluster {}` block switched on (`huiying::up::cluster_node_conf`).
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub async fn start() -> Self {
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes: Vec<NatsServer> = ["node-a", "node-b", "node-c"]
            .iter()
            .zip(&route_ports)
            .map(|(name, port)| NatsServer::node(name, &huiying::up::cluster_node_conf(name, *port, &route_ports)))
            .collect();
        // Started together: each waits for the others' routes before it answers.
        futures::future::join_all(nodes.iter_mut().map(|node| node.restart())).await;
        let cluster = Self { nodes };
        cluster.wait_until_ready().await;
        cluster
    }

    /// Three nodes, one on each of `hosts`, each listening on its host's address.
    pub async fn start_on(hosts: &Hosts) -> Self {
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for (n, name) in ["node-a", "node-b", "node-c"].iter().enumerate() {
            let mut conf = huiying::up::cluster_node_conf(name, route_ports[n], &route_ports);
            for (port, address) in route_ports.iter().zip(&hosts.addresses) {
                conf = conf.replace(&format!("127.0.0.1:{port}"), &format!("{address}:{port}"));
            }
            let mut node = NatsServer::node(name, &conf);
            node.address = hosts.addresses[n].to_string();
            node.netns = Some(hosts.namespace(n));
            nodes.push(node);
        }
        futures::future::join_all(nodes.iter_mut().map(|node| node.restart())).await;
        let cluster = Self { nodes };
        cluster.wait_until_ready().await;
        cluster
    }

    /// Every node's URL, comma-separated, as `NATS_URL` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| n.url.clone()).collect::<Vec<_>>().join(",")
    }

    /// Waits until JetStream has a meta leader, so streams can be created.
    async fn wait_until_ready(&self) {
        let client = connect_as(&self.urls(), "admin").await.unwrap();
        let js = async_nats::jetstream::new(client);
        wait_for("the cluster to elect a JetStream leader", Duration::from_secs(30), || {
            let js = js.clone();
            async move { js.query_account().await.ok() }
        })
        .await;
    }
}

/// The password of a nats.conf user in the tests' nats-servers.
pub fn nats_password(user: &str) -> String {
    format!("test-{user}-password")
}

/// Connects to NATS (one URL, or several comma-separated) as one of the users of nats.conf.
pub async fn connect_as(urls: &str, user: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let urls: Vec<&str> = urls.split(',').collect();
    async_nats::ConnectOptions::with_user_and_password(user.into(), nats_password(user)).connect(urls).await
}

/// `config` logged in to NATS as `user`.
pub fn logged_in_as(config: &Config, user: &str) -> Config {
    let mut config = config.clone();
    config.nats.user = user.into();
    config.nats.password = Secret::new(nats_password(user));
    config
}

impl NatsServer {
    /// Kills the server at once, as a crash would; [`restart`](Self::restart) brings it back.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nats.conf with its commented-out `subscriber` user switched on, as the comment says.
pub fn nats_conf_with_subscriber() -> tempfile::NamedTempFile {
    let original = std::fs::read_to_string(std::path::Path::new(REPO).join("nats.conf")).unwrap();
    let (head, template) = original.split_once("# { user: subscriber").expect("the template is in nats.conf");
    let (template, tail) = template.split_once("# } }").unwrap();
    let uncommented: String =
        template.lines().map(|line| line.trim_start().trim_start_matches('#')).collect::<Vec<_>>().join("\n");
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), format!("{head}{{ user: subscriber{uncommented}}} }}{tail}")).unwrap();
    config
}
