//! Shell lines that `keyward server --dev` and `keyward init` print for the user to paste, so
//! `keyward`, `bao` and `vault` reach the new server.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Returns the `https://` address a client on this machine uses to reach a server listening
/// on `listen`. An unspecified address (`0.0.0.0`, `::`) becomes loopback, which the
/// generated certificate names.
pub fn client_addr(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("https://{}", SocketAddr::new(ip, listen.port()))
}

/// Returns three `export` lines, for the `KEYWARD_`, `BAO_` and `VAULT_` variables. The CA
/// file's path is made absolute so that the lines work from any directory.
pub fn export_lines(addr: &str, ca_file: &Path, token: &str) -> String {
    let ca_file = std::path::absolute(ca_file).unwrap_or_else(|_| ca_file.to_owned());
    let addr = quote(addr);
    let ca = quote(&ca_file.display().to_string());
    let token = quote(token);

    let mut lines = String::new();
    for prefix in ["KEYWARD", "BAO", "VAULT"] {
        let _ = writeln!(
            lines,
            "export {prefix}_ADDR={addr} {prefix}_CACERT={ca} {prefix}_TOKEN={token}"
        );
    }
    lines
}

/// Quotes `text` for a POSIX shell: single quotes, with each `'` written as `'\''`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_becomes_loopback() {
        let cases = [
            ("127.0.0.1:8200", "https://127.0.0.1:8200"),
            ("0.0.0.0:8300", "https://127.0.0.1:8300"),
            ("[::]:8200", "https://[::1]:8200"),
            ("[::1]:8200", "https://[::1]:8200"),
        ];
        for (listen, expected) in cases {
            let listen: SocketAddr = listen.parse().expect("valid socket address");
            assert_eq!(client_addr(listen), expected);
        }
    }

    #[test]
    fn export_lines_quote_values() {
        let lines = export_lines(
            "https://127.0.0.1:8200",
            Path::new("/srv/it's/ca.pem"),
            "kw_example",
        );
        let first = lines.lines().next().expect("three lines");
        assert_eq!(
            first,
            r"export KEYWARD_ADDR='https://127.0.0.1:8200' KEYWARD_CACERT='/srv/it'\''s/ca.pem' KEYWARD_TOKEN='kw_example'"
        );
        assert_eq!(lines.lines().count(), 3);
        assert!(lines.contains("export BAO_ADDR="), "{lines}");
        assert!(lines.contains("VAULT_TOKEN='kw_example'"), "{lines}");
    }

    #[test]
    fn relative_ca_path_becomes_absolute() {
        let lines = export_lines("https://127.0.0.1:8200", Path::new("data/tls/ca.pem"), "t");
        let expected = std::path::absolute("data/tls/ca.pem").expect("absolute path");
        assert!(
            lines.contains(&format!("KEYWARD_CACERT='{}'", expected.display())),
            "{lines}"
        );
    }
}
