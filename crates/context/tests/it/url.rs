//! Tarball URLs against a small HTTP server on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_context::{ContextError, DockerfileSpec, Opener};

/// What the server answers for one path.
#[derive(Clone)]
enum Reply {
    /// 200 with a body and an ETag (answers 304 to a matching If-None-Match).
    Body(Vec<u8>, &'static str),
    /// A redirect to another path.
    Redirect(&'static str),
    /// A Content-Length larger than the body, then the connection closes.
    Short(Vec<u8>),
    /// A Content-Length larger than the body, then nothing more for 10 s
    /// with the connection open (a stalled server).
    Stall(Vec<u8>),
}

struct Http {
    port: u16,
    routes: Arc<Mutex<Vec<(&'static str, Reply)>>>,
    hits: Arc<AtomicUsize>,
}

impl Http {
    fn start(routes: Vec<(&'static str, Reply)>) -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = Arc::new(Mutex::new(routes));
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (routes.clone(), hits.clone());
        // The thread ends with the test process; it only ever accepts.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (r, h) = (r.clone(), h.clone());
                std::thread::spawn(move || serve(stream, &r, &h));
            }
        });
        Http { port, routes, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve(stream: TcpStream, routes: &Mutex<Vec<(&'static str, Reply)>>, hits: &AtomicUsize) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut inm = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("if-none-match")
        {
            inm = Some(v.trim().to_owned());
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let reply = routes
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| r.clone());
    let mut s = stream;
    let _ = match reply {
        None => s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(Reply::Redirect(to)) => s.write_all(
            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        ),
        Some(Reply::Body(body, etag)) => {
            if inm.as_deref() == Some(etag) {
                s.write_all(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n")
            } else {
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                s.write_all(&body)
            }
        }
        Some(Reply::Stall(body)) => {
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len() * 2
                )
                .as_bytes(),
            );
            let _ = s.write_all(&body);
            let _ = s.flush();
            std::thread::sleep(Duration::from_secs(10));
            Ok(())
        }
        Some(Reply::Short(body)) => {
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len() * 2
                )
                .as_bytes(),
            );
            s.write_all(&body)
        }
    };
}

fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn tarball_url_is_downloaded_extracted_and_revalidated() {
    let body = tar_gz(&[
        ("Dockerfile", "FROM scratch\n"),
        ("sub/app.Dockerfile", "FROM sub\n"),
        ("src/a.txt", "a"),
    ]);
    let http = Http::start(vec![
        ("/ctx.tar.gz", Reply::Body(body, "\"v1\"")),
        ("/go", Reply::Redirect("/ctx.tar.gz")),
        ("/Dockerfile", Reply::Body(b"FROM text\n".to_vec(), "\"t\"")),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let opener = Opener::new(cache.path());
    let ctx = opener
        .open(&http.url("/ctx.tar.gz"), std::io::empty())
        .unwrap();
    assert_eq!(ctx.dockerfile().text, b"FROM scratch\n");
    assert_eq!(std::fs::read(ctx.root().join("src/a.txt")).unwrap(), b"a");
    // Again: a conditional request answered 304, the same directory.
    let again = opener
        .open(&http.url("/ctx.tar.gz"), std::io::empty())
        .unwrap();
    assert_eq!(again.root(), ctx.root());
    // -f inside the archive; a redirect is followed.
    let ctx = Opener::new(cache.path())
        .dockerfile(DockerfileSpec::Path("sub/app.Dockerfile".into()))
        .open(&http.url("/go"), std::io::empty())
        .unwrap();
    assert_eq!(ctx.dockerfile().text, b"FROM sub\n");
    // A plain file is a Dockerfile with an empty context.
    let ctx = opener
        .open(&http.url("/Dockerfile"), std::io::empty())
        .unwrap();
    assert_eq!(ctx.dockerfile().text, b"FROM text\n");
    assert!(ctx.walk().unwrap().is_empty());
    // The content changes: downloaded again.
    let new = tar_gz(&[("Dockerfile", "FROM new\n")]);
    http.routes.lock().unwrap()[0].1 = Reply::Body(new, "\"v2\"");
    let before = http.hits.load(Ordering::SeqCst);
    let ctx = opener
        .open(&http.url("/ctx.tar.gz"), std::io::empty())
        .unwrap();
    assert_eq!(ctx.dockerfile().text, b"FROM new\n");
    assert_eq!(http.hits.load(Ordering::SeqCst), before + 1);
}

#[test]
fn download_errors_name_the_url_and_the_problem() {
    let mut big = vec![0u8; 4096];
    big[..2].copy_from_slice(&[0x1f, 0x8b]);
    let http = Http::start(vec![
        ("/loop", Reply::Redirect("/loop")),
        ("/big.tar.gz", Reply::Body(big, "\"b\"")),
        (
            "/short.tar.gz",
            Reply::Short(tar_gz(&[("Dockerfile", "FROM x\n")])),
        ),
        (
            "/bad.tar.gz",
            Reply::Body(vec![0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7], "\"x\""),
        ),
        (
            "/stall.tar.gz",
            Reply::Stall(tar_gz(&[("Dockerfile", "FROM x\n")])),
        ),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let open = |url: String, limit: u64| {
        Opener::new(cache.path())
            .max_download_size(limit)
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_millis(500))
            .open(&url, std::io::empty())
            .unwrap_err()
    };
    let check = |err: ContextError, url: &str, want: &str| {
        let text = err.to_string();
        assert!(text.contains(url), "{text}");
        assert!(text.contains(want), "want {want:?} in {text}");
    };
    let url = http.url("/missing.tar.gz");
    check(open(url.clone(), 1 << 20), &url, "HTTP 404 Not Found");
    let url = http.url("/loop");
    check(open(url.clone(), 1 << 20), &url, "too many redirects");
    let url = http.url("/big.tar.gz");
    check(
        open(url.clone(), 1000),
        &url,
        "more than the limit of 1000 bytes",
    );
    let url = http.url("/short.tar.gz");
    check(
        open(url.clone(), 1 << 20),
        &url,
        "end of file before message length reached",
    );
    // The server sends half the body and then nothing: an error after the
    // read timeout, long before the server gives up (10 s).
    let url = http.url("/stall.tar.gz");
    let started = std::time::Instant::now();
    check(open(url.clone(), 1 << 20), &url, "timed out");
    assert!(started.elapsed() < Duration::from_secs(8));
    let url = http.url("/bad.tar.gz");
    check(open(url.clone(), 1 << 20), &url, "corrupt or truncated");
    // Nothing listens on this port.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/ctx.tar");
    check(open(url.clone(), 1 << 20), &url, "cannot connect");
}
