//! Kafka credentials from a mounted Secret: a directory whose files are librdkafka properties,
//! one per file, named like the property (`sasl.username`, `sasl.password`, `ssl.ca.pem`, …). The
//! key names of the Secrets cert-manager and Strimzi write are understood too: `ca.crt`,
//! `tls.crt`/`user.crt` and `tls.key`/`user.key` are the CA, client certificate and key (PEM),
//! Strimzi's `password` is the SASL password. Nothing else is passed on (a Secret may hold more,
//! such as Strimzi's `user.p12`). The directory is read each time a client is made, so a rotated
//! Secret counts for the next client without a restart.

use std::path::Path;

/// The librdkafka property a Secret key stands for, if it is one chainwatch passes on.
pub fn property_of(key: &str) -> Option<&str> {
    match key {
        "ca.crt" => Some("ssl.ca.pem"),
        "tls.crt" | "user.crt" => Some("ssl.certificate.pem"),
        "tls.key" | "user.key" => Some("ssl.key.pem"),
        "password" => Some("sasl.password"),
        k if ["sasl.", "ssl.", "security.protocol"].iter().any(|p| k.starts_with(p)) => Some(k),
        _ => None,
    }
}

/// The properties in `dir` (values without a trailing newline: `kubectl create secret
/// --from-file` keeps the file's). Errors name the directory, never a value.
pub fn read(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read Kafka credentials from {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| format!("cannot read Kafka credentials from {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // a mounted Secret's `..data` and `..<timestamp>` entries are its bookkeeping
        if name.starts_with('.') {
            continue;
        }
        let Some(property) = property_of(&name) else {
            tracing::debug!(key = %name, "not a Kafka property: ignored");
            continue;
        };
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let value = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read Kafka credential {}: {e}", path.display()))?;
        out.push((property.to_string(), value.trim_end_matches(['\r', '\n']).to_string()));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mounted_secret_becomes_properties() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2026_12_03_18_00_00.1");
        std::fs::create_dir(&data).unwrap();
        for (k, v) in [
            ("sasl.username", "chainwatch"),
            ("password", "s3cret\n"),
            ("ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
            ("user.p12", "binary"),
            ("security.protocol", "SASL_SSL"),
        ] {
            std::fs::write(data.join(k), v).unwrap();
            std::os::unix::fs::symlink(data.join(k), dir.path().join(k)).unwrap();
        }
        std::os::unix::fs::symlink(&data, dir.path().join("..data")).unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            [
                ("sasl.password".to_string(), "s3cret".to_string()),
                ("sasl.username".into(), "chainwatch".into()),
                ("security.protocol".into(), "SASL_SSL".into()),
                ("ssl.ca.pem".into(), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----".into()),
            ]
        );
        let missing = read(&dir.path().join("nope")).unwrap_err();
        assert!(missing.starts_with("cannot read Kafka credentials from"), "{missing}");
    }

    /// The clients are built with TLS and SCRAM (librdkafka refuses `SASL_SSL` without them), and
    /// take the directory's properties over the command line's.
    #[test]
    fn clients_speak_tls_and_scram_with_the_directorys_credentials() {
        let dir = tempfile::tempdir().unwrap();
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "cw"),
            ("password", "pw\n"),
        ] {
            std::fs::write(dir.path().join(k), v).unwrap();
        }
        let mut args = crate::bus::kafka::KafkaArgs::new("127.0.0.1:1");
        args.options = vec![("sasl.username".into(), "overridden".into())];
        args.credentials_dir = Some(dir.path().to_path_buf());
        let config = args.producer_config();
        assert_eq!(config.get("sasl.username"), Some("cw"));
        assert_eq!(config.get("sasl.password"), Some("pw"));
        if let Err(e) = args.admin() {
            panic!("a SASL_SSL client: {e}");
        }
    }
}
