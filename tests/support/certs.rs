//! A test CA, and server certificates it signs for 127.0.0.1 and localhost, made with the openssl
//! CLI (P-256 keys, two days): for the HTTPS tests and for pebble's own API.

use super::fixture::run_dir;
use super::process::run;
use std::path::PathBuf;
use std::process::Command;

const P256: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

pub struct TestCa {
    pub dir: PathBuf,
}

impl TestCa {
    pub fn new(label: &str) -> TestCa {
        let dir = run_dir().join(format!("ca-{label}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa { dir };
        ca.openssl(&[
            &["req", "-x509"],
            &P256[..],
            &["-keyout", "ca.key", "-out", "ca.pem"],
            &["-days", "2", "-subj", "/CN=registry-mirror test CA"],
        ]);
        ca
    }

    /// A certificate for 127.0.0.1 and localhost named `name`: its (cert, key) files.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let subject = format!("/CN={name}");
        self.openssl(&[
            &["req"],
            &P256[..],
            &["-keyout", &key, "-out", &csr, "-subj", &subject],
        ]);
        let ext = ext.display().to_string();
        self.openssl(&[
            &[
                "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
            ],
            &[
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        ]);
        (self.dir.join(cert), self.dir.join(key))
    }

    /// The CA's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn openssl(&self, args: &[&[&str]]) {
        let mut command = Command::new("openssl");
        command.current_dir(&self.dir).args(args.concat());
        run(command);
    }
}
