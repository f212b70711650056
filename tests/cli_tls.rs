//! The CLI through a TLS-terminating proxy: `https://` for the API and
//! `wss://` for attach, verified against the roots the system trusts
//! (here a test CA, named by `SSL_CERT_FILE`).

mod kit;

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kit::{err, expect_code, out, TestServer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(60);

fn openssl(dir: &Path, args: &[&str]) {
    let st = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(st, Ok(s) if s.success()),
        "openssl {args:?}: {st:?}"
    );
}

/// A CA (`ca.pem`) and a certificate it signed for localhost and
/// 127.0.0.1 (`leaf.pem`, `leaf.key`).
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=bento test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    let ext = "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
               keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("leaf.ext"), ext).unwrap_or_else(|e| panic!("{e}"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// Terminates TLS on a new port and passes the plain bytes to `backend`.
async fn tls_proxy(dir: &Path, backend: String) -> String {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .and_then(|i| i.collect())
        .unwrap_or_else(|e| panic!("leaf.pem: {e}"));
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key"))
        .unwrap_or_else(|e| panic!("leaf.key: {e}"));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap_or_else(|e| panic!("server config: {e}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"))
        .port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(&backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    format!("https://localhost:{port}")
}

async fn bento(url: &str, ca: Option<&Path>, args: &[&str], stdin: &[u8]) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut c = kit::cli_command(url, args);
    c.env_remove("SSL_CERT_DIR").stdin(Stdio::piped());
    match ca {
        Some(ca) => c.env("SSL_CERT_FILE", ca),
        None => c.env_remove("SSL_CERT_FILE"),
    };
    let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin).await;
    }
    match tokio::time::timeout(LIMIT, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        other => panic!("bento {args:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_work_through_a_tls_terminating_proxy() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    make_certs(dir.path());
    let backend = s.url.trim_start_matches("http://").to_string();
    let url = tls_proxy(dir.path(), backend).await;
    let ca = dir.path().join("ca.pem");
    let f = s.submit("def main():\n    send(b'got ' + recv())\n").await;

    // `run` creates over https and attaches over wss, stdin and all.
    let o = bento(&url, Some(&ca), &["run", &f], b"tls\n").await;
    expect_code(&o, 0, "run over https");
    assert_eq!(out(&o), "got tls\n");
    let o = bento(&url, Some(&ca), &["functions"], b"").await;
    expect_code(&o, 0, "functions over https");
    assert!(out(&o).contains(&f), "{}", out(&o));

    // The certificate really is checked: without the CA it is refused.
    let o = bento(&url, None, &["functions"], b"").await;
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(
        err(&o),
        format!(
            "bento: cannot reach the Bento server at {url}: invalid peer certificate: UnknownIssuer\n\
             hint: the server's TLS certificate is not trusted here: add its CA to the system's \
             roots, or point SSL_CERT_FILE at it\n"
        ),
        "one error, one hint, no log noise"
    );
    s.stop().await;
}
