//! "Pods": a network namespace with loopback up and one end of a veth pair, plus a kubelet-named pod
//! cgroup with one or more container cgroups. Two pods are joined by a veth pair in a /24 of 10.0.0.0/8
//! that this process leased (a `flock` on a file under /run/podtap-tests), so parallel tests and
//! parallel test binaries never share addresses.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::cgroup::{CgroupDriver, Container, PodCgroup};
use crate::util::{next_id, random_bytes, require_root, require_tool, sh};

/// Names of the network namespaces this harness creates start with this (see `leftover_namespaces`).
pub const NETNS_PREFIX: &str = "pt-";

/// Lease of one 10.x.y.0/24, held by an exclusive flock for as long as this value lives.
#[derive(Debug)]
struct SubnetLease {
    _lock: File,
    x: u8,
    y: u8,
}

impl SubnetLease {
    fn acquire() -> Result<Self> {
        let dir = PathBuf::from("/run/podtap-tests");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // 10.100.0.0 - 10.199.255.0: start at a random /24 and take the first one nobody holds.
        let r = random_bytes(2)?;
        let start = u32::from(u16::from_be_bytes([r[0], r[1]])) % (100 * 256);
        for i in 0..100 * 256 {
            let n = (start + i) % (100 * 256);
            let (x, y) = (100 + (n / 256) as u8, (n % 256) as u8);
            let path = dir.join(format!("10.{x}.{y}.0.lock"));
            let file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Self { _lock: file, x, y });
            }
        }
        bail!("no free 10.x.y.0/24 test subnet")
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.x, self.y, host)
    }
}

/// A network namespace deleted on drop.
#[derive(Debug)]
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: String) -> Result<Self> {
        sh("ip", &["netns", "add", &name]).context("cannot create a network namespace")?;
        let ns = Self { name };
        sh("ip", &["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = sh("ip", &["netns", "del", &self.name]) {
            eprintln!("podtap-tests: {e:#}");
        }
    }
}

/// One pod. Fields drop in order: processes die with the cgroup before the namespace goes.
#[derive(Debug)]
pub struct Pod {
    pub cgroup: PodCgroup,
    pub containers: Vec<Container>,
    pub ip: Ipv4Addr,
    netns: Netns,
}

/// A process started in a pod, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct PodProcess {
    pub child: Child,
}

impl PodProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PodProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Pod {
    fn new(netns: Netns, ip: Ipv4Addr, driver: CgroupDriver) -> Result<Self> {
        let mut cgroup = PodCgroup::new(driver)?;
        let first = cgroup.add_container()?;
        Ok(Self {
            cgroup,
            containers: vec![first],
            ip,
            netns,
        })
    }

    /// Network namespace name.
    pub fn netns(&self) -> &str {
        &self.netns.name
    }

    pub fn uid(&self) -> &str {
        &self.cgroup.uid
    }

    /// The first container.
    pub fn container(&self) -> &Container {
        &self.containers[0]
    }

    /// Adds another container (cgroup) to this pod and returns its index.
    pub fn add_container(&mut self) -> Result<usize> {
        let c = self.cgroup.add_container()?;
        self.containers.push(c);
        Ok(self.containers.len() - 1)
    }

    /// A command that runs `program` in this pod's namespace, born in container `container`'s cgroup.
    pub fn command(&self, container: usize, program: &str, args: &[&str]) -> Result<Command> {
        let c = self
            .containers
            .get(container)
            .context("no such container")?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns.name, program])
            .args(args);
        c.enter_in_child(&mut cmd)?;
        Ok(cmd)
    }

    /// Starts `program` in the pod (stdin null, stdout/stderr piped) and guards it.
    pub fn spawn(&self, container: usize, program: &str, args: &[&str]) -> Result<PodProcess> {
        let mut cmd = self.command(container, program, args)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {program} in pod {}", self.netns.name))?;
        Ok(PodProcess { child })
    }

    /// Runs `f` on a thread that joined this pod's network namespace (the calling thread is untouched).
    pub fn in_netns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = format!("/run/netns/{}", self.netns.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        let handle = std::thread::spawn(move || {
            // SAFETY: setns on a namespace descriptor, affecting only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        });
        let r = handle
            .join()
            .map_err(|_| anyhow::anyhow!("netns thread panicked"))?;
        r.context("setns into the pod's network namespace")
    }

    /// Waits until something accepts TCP connections on `ip:port` inside this pod.
    pub fn wait_listening(&self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Result<()> {
        let addr = SocketAddr::from((ip, port));
        let ok = self.in_netns(move || {
            let start = Instant::now();
            while start.elapsed() < timeout {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })?;
        if !ok {
            bail!(
                "nothing accepts connections on {addr} in pod {} after {timeout:?}",
                self.netns.name
            );
        }
        Ok(())
    }
}

/// Two pods joined by a veth pair: `a` has 10.x.y.1, `b` has 10.x.y.2.
#[derive(Debug)]
pub struct PodPair {
    pub a: Pod,
    pub b: Pod,
    _lease: SubnetLease,
}

impl PodPair {
    /// Two pods, `a` with cgroups named by `driver_a`, `b` by `driver_b`.
    pub fn new(driver_a: CgroupDriver, driver_b: CgroupDriver) -> Result<Self> {
        require_root()?;
        require_tool("ip")?;
        let lease = SubnetLease::acquire()?;
        let base = format!("{NETNS_PREFIX}{}-{}", std::process::id(), next_id());
        let ns_a = Netns::create(format!("{base}a"))?;
        let ns_b = Netns::create(format!("{base}b"))?;
        sh(
            "ip",
            &[
                "link", "add", "veth0", "netns", &ns_a.name, "type", "veth", "peer", "name",
                "veth0", "netns", &ns_b.name,
            ],
        )
        .context("creating the veth pair")?;
        for (ns, ip) in [(&ns_a, lease.addr(1)), (&ns_b, lease.addr(2))] {
            sh(
                "ip",
                &[
                    "-n",
                    &ns.name,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    "veth0",
                ],
            )?;
            sh("ip", &["-n", &ns.name, "link", "set", "veth0", "up"])?;
        }
        let a = Pod::new(ns_a, lease.addr(1), driver_a)?;
        let b = Pod::new(ns_b, lease.addr(2), driver_b)?;
        Ok(Self {
            a,
            b,
            _lease: lease,
        })
    }

    /// The addresses of both pods, for filtering podtap's records.
    pub fn ips(&self) -> Vec<Ipv4Addr> {
        vec![self.a.ip, self.b.ip]
    }
}

/// Network namespaces named like this harness's that still exist (all tests finished => should be none).
pub fn leftover_namespaces() -> Result<Vec<String>> {
    let out = sh("ip", &["netns", "list"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .map(str::to_owned)
        .collect())
}
