//! A network namespace joined to the host by a veth pair, for a browser whose downlink a
//! test shapes with `tc` (tests/e2e/downlink.rs) or drops packets on (tests/e2e/faults_loss.rs).
//!
//! The pair gets a private /30 in 10.213.0.0/16 chosen from the test's PID: the host end
//! is `.1` (the server listens there), the namespace end `.2`. Names carry the PID and a
//! per-process counter, so parallel test processes never share a namespace, a link or a
//! subnet. Dropping the guard removes the shaping, the link (both ends) and the namespace,
//! also when the test panics; processes started inside must be stopped before (declare
//! the guard first, so it drops last).
//!
//! Needs root and the Debian package `iproute2` (`ip`, `tc`); `block_udp_to_host` and
//! `drop_downlink_at_random` also need `nftables` (`nft`), `delay_udp` needs `iptables`; their
//! rules live in the namespace and go with it. Never: skip when one
//! is missing, reuse a namespace it did not create, or touch any other interface.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::delay::Delay;

/// A namespace `shardcast-<pid>-<n>` with one veth link to the host.
pub struct NetNs {
    name: String,
    host_link: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
    shaped: bool,
}

impl NetNs {
    /// Creates the namespace, the veth pair and their addresses, and brings both ends up.
    pub fn create() -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // 16384 /30 subnets in 10.213.0.0/16; the PID (plus the counter) picks one.
        let index = (pid.wrapping_mul(8).wrapping_add(n)) % 16384;
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + index * 4;
        let name = format!("shardcast-{pid}-{n}");
        // Link names are at most 15 bytes: "sc" + PID (at most 7 digits) + counter + end.
        let host_link = format!("sc{pid}x{n}h");
        let ns_link = format!("sc{pid}x{n}n");
        if host_link.len() > 15 {
            bail!("link name {host_link} is longer than 15 bytes");
        }
        // A namespace we failed to add may be someone else's: only ours is removed on drop.
        run("ip", &["netns", "add", &name])?;
        let ns = Self {
            name,
            host_link,
            host_ip: Ipv4Addr::from(base + 1),
            ns_ip: Ipv4Addr::from(base + 2),
            shaped: false,
        };
        // From here on, Drop removes whatever part was created.
        let (host_link, name) = (ns.host_link.as_str(), ns.name.as_str());
        let host_cidr = format!("{}/30", ns.host_ip);
        let ns_cidr = format!("{}/30", ns.ns_ip);
        #[rustfmt::skip]
        let steps: [&[&str]; 7] = [
            &["link", "add", host_link, "type", "veth", "peer", "name", &ns_link],
            &["link", "set", &ns_link, "netns", name],
            &["addr", "add", &host_cidr, "dev", host_link],
            &["link", "set", host_link, "up"],
            &["-n", name, "addr", "add", &ns_cidr, "dev", &ns_link],
            &["-n", name, "link", "set", &ns_link, "up"],
            // Chromium's DevTools and its own loopback traffic inside the namespace.
            &["-n", name, "link", "set", "lo", "up"],
        ];
        for args in steps {
            run("ip", args)?;
        }
        Ok(ns)
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host end's address: what the server binds, reachable from inside.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The namespace end's address.
    pub fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// Drops every UDP packet between the namespace and the host end (both directions), as a
    /// firewall that lets only TCP through does: an nftables table `shardcast` inside the
    /// namespace. Loopback inside the namespace is untouched.
    pub fn block_udp_to_host(&mut self) -> anyhow::Result<()> {
        let host = self.host_ip.to_string();
        let ns = self.name.clone();
        #[rustfmt::skip]
        let steps: [&[&str]; 5] = [
            &["add", "table", "inet", "shardcast"],
            &["add", "chain", "inet", "shardcast", "out",
              "{ type filter hook output priority 0 ; policy accept ; }"],
            &["add", "chain", "inet", "shardcast", "in",
              "{ type filter hook input priority 0 ; policy accept ; }"],
            &["add", "rule", "inet", "shardcast", "out", "ip", "daddr", &host, "meta",
              "l4proto", "udp", "counter", "drop"],
            &["add", "rule", "inet", "shardcast", "in", "ip", "saddr", &host, "meta",
              "l4proto", "udp", "counter", "drop"],
        ];
        for args in steps {
            let mut full = vec!["netns", "exec", ns.as_str(), "nft"];
            full.extend_from_slice(args);
            run_nft(&full)?;
        }
        Ok(())
    }

    /// UDP packets the rules of `block_udp_to_host` dropped so far (outgoing + incoming).
    pub fn udp_dropped(&self) -> anyhow::Result<u64> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "nft",
                "list",
                "table",
                "inet",
                "shardcast",
            ])
            .output()
            .context("nft list table")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "... counter packets N bytes M drop"
        let mut total = 0;
        for line in text.lines().filter(|l| l.contains("counter packets")) {
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                if w == "packets" {
                    total += words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        Ok(total)
    }

    /// Drops `percent` % of the UDP packets the host end sends into the namespace, each one
    /// independently at random: loss on the namespace's downlink. A stand-in for
    /// `tc qdisc … netem loss`, which this kernel lacks (CONFIG_NET_SCH_NETEM is off):
    /// nftables' `numgen random` on the namespace's input, in a table `shardcast_loss` of its
    /// own (so it combines with `block_udp_to_host`). TCP (signaling, DevTools) is untouched.
    pub fn drop_downlink_at_random(&mut self, percent: u32) -> anyhow::Result<()> {
        anyhow::ensure!(percent <= 100, "loss of {percent} %");
        let host = self.host_ip.to_string();
        let ns = self.name.clone();
        let below = percent.to_string();
        #[rustfmt::skip]
        let steps: [&[&str]; 3] = [
            &["add", "table", "inet", "shardcast_loss"],
            &["add", "chain", "inet", "shardcast_loss", "in",
              "{ type filter hook input priority 0 ; policy accept ; }"],
            &["add", "rule", "inet", "shardcast_loss", "in", "ip", "saddr", &host, "meta",
              "l4proto", "udp", "numgen", "random", "mod", "100", "<", &below, "counter",
              "drop"],
        ];
        for args in steps {
            let mut full = vec!["netns", "exec", ns.as_str(), "nft"];
            full.extend_from_slice(args);
            run_nft(&full)?;
        }
        Ok(())
    }

    /// Delays the UDP packets between the namespace and the host end by `one_way` each way,
    /// `reorder_percent` % of them a little more so that later ones overtake them, while the
    /// returned guard lives (a stand-in for `tc netem delay … reorder …`: [`Delay`]).
    pub fn delay_udp(&self, one_way: Duration, reorder_percent: u32) -> anyhow::Result<Delay> {
        Delay::start(&self.name, self.host_ip, one_way, reorder_percent)
    }

    /// Ends [`NetNs::drop_downlink_at_random`]: the downlink loses nothing again.
    pub fn stop_dropping_downlink(&mut self) -> anyhow::Result<()> {
        let ns = self.name.clone();
        run_nft(&[
            "netns",
            "exec",
            &ns,
            "nft",
            "delete",
            "table",
            "inet",
            "shardcast_loss",
        ])
    }

    /// Limits what the host sends into the namespace (the namespace's downlink) to
    /// `kbit` kbit/s: a token bucket on the host end's egress, drop-tail once packets would
    /// wait more than 200 ms, as a thin access link does.
    pub fn shape_downlink(&mut self, kbit: u32) -> anyhow::Result<()> {
        let rate = format!("{kbit}kbit");
        #[rustfmt::skip]
        let args = [
            "qdisc", "replace", "dev", &self.host_link, "root",
            "tbf", "rate", &rate, "burst", "10kb", "latency", "200ms",
        ];
        run("tc", &args)?;
        self.shaped = true;
        Ok(())
    }

    /// Removes the shaping: the link is as fast as the host again.
    pub fn unshape_downlink(&mut self) -> anyhow::Result<()> {
        run("tc", &["qdisc", "del", "dev", &self.host_link, "root"])?;
        self.shaped = false;
        Ok(())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Each step on its own: a half-built namespace is torn down as far as it got.
        if self.shaped {
            let _ = run("tc", &["qdisc", "del", "dev", &self.host_link, "root"]);
        }
        // Deleting one end of a veth pair deletes the other.
        let _ = run("ip", &["link", "del", &self.host_link]);
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Runs an iproute2 tool; `Err` names the command, its output, and the package when the
/// tool is missing.
fn run(tool: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = match Command::new(tool).args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "`{tool}` not found: install the Debian package `iproute2` (the downlink tests \
             need `ip` and `tc`, and root); they do not skip"
        ),
        Err(e) => return Err(e).with_context(|| format!("run {tool} {}", args.join(" "))),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`{tool} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            stderr.trim(),
            if stderr.contains("not permitted") {
                " (network namespaces and tc need root)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `ip netns exec <ns> nft ...`: as `run`, naming the nftables package when `nft` is missing.
fn run_nft(args: &[&str]) -> anyhow::Result<()> {
    if Command::new("nft").arg("--version").output().is_err() {
        bail!(
            "`nft` not found: install the Debian package `nftables` (the ICE-TCP test needs \
             it); it does not skip"
        );
    }
    run("ip", args)
}
