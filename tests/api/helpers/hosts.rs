//! Hosts of their own on this machine: network namespaces joined by a bridge, so a test
//! can cut one off from the others as a network partition would (needs root and `ip`).

use std::net::Ipv4Addr;
use std::process::Command;

/// Three namespaces `hyt<n>-a/b/c`, each with an address on a bridge in the test's own
/// namespace (where the services run); removed on drop.
pub struct Hosts {
    prefix: String,
    bridge: String,
    /// The hosts' addresses, in order.
    pub addresses: Vec<Ipv4Addr>,
}

impl Hosts {
    /// `None` where namespaces cannot be made (not root, no `ip`): the caller says so and
    /// skips.
    pub fn create(count: usize) -> Option<Self> {
        // Unique per test process: interface names are at most 15 characters, and another
        // test run on the machine may hold hosts of its own.
        let id = std::process::id();
        let prefix = format!("hyt{}", id % 100_000);
        let subnet = [10, 100 + (id % 100) as u8, ((id / 100) % 250) as u8];
        let hosts = Self {
            bridge: format!("{prefix}br"),
            addresses: (1..=count as u8).map(|n| Ipv4Addr::new(subnet[0], subnet[1], subnet[2], n)).collect(),
            prefix,
        };
        let bridge_address = format!("{}.{}.{}.254/24", subnet[0], subnet[1], subnet[2]);
        let made = ip(&["link", "add", &hosts.bridge, "type", "bridge"])
            && ip(&["addr", "add", &bridge_address, "dev", &hosts.bridge])
            && ip(&["link", "set", &hosts.bridge, "up"])
            && (0..count).all(|n| hosts.make_host(n));
        made.then_some(hosts)
    }

    fn make_host(&self, n: usize) -> bool {
        let (ns, outside, inside) = (self.namespace(n), self.outside(n), format!("{}{n}i", self.prefix));
        ip(&["netns", "add", &ns])
            && ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside])
            && ip(&["link", "set", &inside, "netns", &ns])
            && ip(&["link", "set", &outside, "master", &self.bridge])
            && ip(&["link", "set", &outside, "up"])
            && ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.addresses[n]), "dev", &inside])
            && ip(&["-n", &ns, "link", "set", &inside, "up"])
            && ip(&["-n", &ns, "link", "set", "lo", "up"])
    }

    pub fn namespace(&self, n: usize) -> String {
        format!("{}-{}", self.prefix, (b'a' + n as u8) as char)
    }

    /// The host's end of the bridge: down, nothing reaches the host or leaves it.
    fn outside(&self, n: usize) -> String {
        format!("{}{n}o", self.prefix)
    }

    /// Cuts host `n` off from every other host and from the services.
    pub fn cut(&self, n: usize) {
        assert!(ip(&["link", "set", &self.outside(n), "down"]), "cutting host {n} off");
    }

    /// Joins host `n` to the others again.
    pub fn mend(&self, n: usize) {
        assert!(ip(&["link", "set", &self.outside(n), "up"]), "joining host {n} again");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in 0..self.addresses.len() {
            ip(&["netns", "del", &self.namespace(n)]);
            ip(&["link", "del", &self.outside(n)]);
        }
        ip(&["link", "del", &self.bridge]);
    }
}

/// Runs `ip` with `args`; true when it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).output().is_ok_and(|output| output.status.success())
}
