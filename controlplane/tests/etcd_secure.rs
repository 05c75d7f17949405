//! etcd as operators secure it: TLS with client certificates (`--client-cert-auth`) and etcd's
//! own users. A real etcd with certificates made by the openssl command line; the store must
//! work with the right CA, certificate and password, and fail clearly without them.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shardcast_controlplane::config::{Config, ConfigError, EtcdConfig, ProcessRole};
use shardcast_controlplane::store::{EtcdStore, Store};
use support::ports::free_tcp_port;

const ETCD: &str = "/usr/bin/etcd";
const OPENSSL: &str = "/usr/bin/openssl";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(OPENSSL)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {OPENSSL} (install openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

/// etcd on free loopback ports, killed by PID on drop.
struct Etcd {
    child: Child,
    endpoint: String,
    _data: tempfile::TempDir,
}

impl Etcd {
    /// Plain HTTP, or TLS with client certificates from `certs`.
    fn start(certs: Option<&Path>) -> Etcd {
        let data = tempfile::tempdir().unwrap();
        let scheme = if certs.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{}", free_tcp_port());
        let peer = format!("http://127.0.0.1:{}", free_tcp_port());
        let mut cmd = Command::new(ETCD);
        cmd.arg("--data-dir")
            .arg(data.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(data.path().join("etcd.log")).unwrap(),
            ));
        if let Some(dir) = certs {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(dir.join("ca.pem"))
                .arg("--cert-file")
                .arg(dir.join("server.pem"))
                .arg("--key-file")
                .arg(dir.join("server-key.pem"));
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD} (install etcd-server): {e}"));
        Etcd {
            child,
            endpoint,
            _data: data,
        }
    }

    fn config(&self, certs: Option<&Path>, client_cert: bool) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![self.endpoint.clone()],
            ca_file: certs.map(|d| d.join("ca.pem")),
            cert_file: certs.filter(|_| client_cert).map(|d| d.join("client.pem")),
            key_file: certs
                .filter(|_| client_cert)
                .map(|d| d.join("client-key.pem")),
            ..Default::default()
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store for `config` once etcd answers through it (etcd takes a moment to start).
async fn store_when_up(config: &EtcdConfig) -> EtcdStore {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(store) = EtcdStore::connect_with(config).await {
            if store.status_revision().await.is_ok() {
                return store;
            }
        }
        assert!(Instant::now() < deadline, "etcd did not answer in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn round_trip(store: &EtcdStore) {
    store
        .put("/shardcast/test/k", b"v".to_vec(), None)
        .await
        .expect("put");
    let got = store.get("/shardcast/test/k").await.expect("get");
    assert_eq!(got.map(|kv| kv.value), Some(b"v".to_vec()));
}

fn cert_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let path = dir.path().to_path_buf();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_works_and_nothing_less_does() {
    let (_keep, certs) = cert_dir();
    let etcd = Etcd::start(Some(&certs));
    let store = store_when_up(&etcd.config(Some(&certs), true)).await;
    round_trip(&store).await;

    // The CA alone: etcd refuses a client without a certificate.
    let no_cert = EtcdStore::connect_with(&etcd.config(Some(&certs), false)).await;
    if let Ok(s) = no_cert {
        assert!(
            s.status_revision().await.is_err(),
            "no client certificate, no answer"
        );
    }
    // Plain HTTP to the TLS port.
    let mut plain = etcd.config(None, false);
    plain.endpoints = vec![etcd.endpoint.replacen("https://", "http://", 1)];
    if let Ok(s) = EtcdStore::connect_with(&plain).await {
        assert!(
            s.status_revision().await.is_err(),
            "plain HTTP to a TLS etcd"
        );
    }
    // A CA file that is not there names the key.
    let mut missing = etcd.config(Some(&certs), true);
    missing.ca_file = Some(certs.join("nope.pem"));
    let err = EtcdStore::connect_with(&missing)
        .await
        .err()
        .expect("no CA file");
    assert!(err.to_string().contains("etcd.ca_file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_users_the_right_password_works_a_wrong_one_is_refused() {
    let etcd = Etcd::start(None);
    let open = etcd.config(None, false);
    store_when_up(&open).await;
    // Turn on etcd's authentication as an operator would (etcdctl user add root; auth enable).
    let mut admin = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    admin
        .user_add("root", "root-password-1", None)
        .await
        .unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let mut authed = open.clone();
    authed.username = Some("root".into());
    authed.password = Some("root-password-1".into());
    let store = EtcdStore::connect_with(&authed)
        .await
        .expect("right password");
    round_trip(&store).await;

    let mut wrong = authed.clone();
    wrong.password = Some("guess".into());
    let refused = match EtcdStore::connect_with(&wrong).await {
        Err(e) => e.to_string(),
        Ok(s) => s
            .put("/shardcast/test/x", b"1".to_vec(), None)
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(refused.contains("authentication failed"), "{refused}");

    // Without credentials nothing is written.
    let anonymous = EtcdStore::connect_with(&open).await.unwrap();
    assert!(anonymous
        .put("/shardcast/test/y", b"1".to_vec(), None)
        .await
        .is_err());
}

#[test]
fn etcd_settings_are_checked_at_start_naming_the_key() {
    let check = |f: &dyn Fn(&mut Config)| {
        let mut c = Config::default();
        c.cluster.secret = Some("a-cluster-secret-of-length".into());
        f(&mut c);
        c.validate(ProcessRole::ControlPlane)
    };
    let key_of = |r: Result<(), ConfigError>| match r {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an invalid key, got {other:?}"),
    };
    assert_eq!(check(&|_| {}), Ok(()));
    assert_eq!(
        key_of(check(&|c| c.etcd.cert_file = Some("c.pem".into()))),
        "etcd.key_file"
    );
    assert_eq!(
        key_of(check(&|c| {
            c.etcd.cert_file = Some("c.pem".into());
            c.etcd.key_file = Some("k.pem".into());
        })),
        "etcd.ca_file"
    );
    assert_eq!(
        key_of(check(&|c| c.etcd.ca_file = Some("ca.pem".into()))),
        "etcd.endpoints",
        "a CA with an http:// endpoint"
    );
    assert_eq!(
        key_of(check(
            &|c| c.etcd.endpoints = vec!["https://10.0.0.1:2379".into()]
        )),
        "etcd.endpoints",
        "https without a CA"
    );
    assert_eq!(
        key_of(check(&|c| c.etcd.username = Some("u".into()))),
        "etcd.password"
    );
    assert_eq!(
        key_of(check(&|c| c.etcd.password = Some("p".into()))),
        "etcd.username"
    );
}
