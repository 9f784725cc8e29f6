//! PostgreSQL through the `postgres` crate (many vantage points, one database). The cron lock
//! is a session advisory lock keyed by the host name, so a fleet's machines write at the same
//! time while one machine's overlapping runs do not.
//!
//! TLS (rustls) follows libpq's `sslmode`: see [`Postgres::connect`].

use postgres::types::{IsNull, ToSql, Type};

use crate::store::{Db, Dialect, Value};

pub struct Postgres {
    client: postgres::Client,
    /// Prepared statements by SQL text (the inserts repeat thousands of times).
    prepared: std::collections::HashMap<String, postgres::Statement>,
}

impl Postgres {
    fn statement(&mut self, sql: &str) -> anyhow::Result<postgres::Statement> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        if self.prepared.len() < 64 {
            self.prepared.insert(sql.to_owned(), s.clone());
        }
        Ok(s)
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Self::Int(i) if *ty == Type::TEXT || *ty == Type::VARCHAR => {
                i.to_string().to_sql(ty, out)
            }
            Self::Int(i) => i.to_sql(ty, out),
            Self::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// Bound on connecting and logging in, unless the URL sets `connect_timeout` (seconds).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Postgres {
    /// TLS as libpq does it: `sslmode=prefer` (the default) and `require` encrypt without
    /// checking the certificate; `verify-ca` and `verify-full` check it against the webpki roots
    /// plus `sslrootcert=PATH` (a PEM file); `disable` is plain.
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        let shown = crate::store::StoreUrl::Postgres(url.to_owned());
        let (url, params) = take_params(url, &["sslrootcert", "sslmode"]);
        let ca = params
            .iter()
            .find(|(k, _)| k == "sslrootcert")
            .map(|(_, v)| v.as_str());
        let mode = params
            .iter()
            .find(|(k, _)| k == "sslmode")
            .map_or("prefer", |(_, v)| v.as_str());
        let (tokio_mode, verify) = match mode {
            "disable" | "allow" | "prefer" => (mode, false),
            "require" => ("require", false),
            "verify-ca" | "verify-full" => ("require", true),
            other => anyhow::bail!("{shown}: unknown sslmode `{other}`"),
        };
        let tokio_mode = if tokio_mode == "allow" {
            "prefer"
        } else {
            tokio_mode
        };
        let mut config: postgres::Config =
            url.parse().map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        config.ssl_mode(match tokio_mode {
            "disable" => postgres::config::SslMode::Disable,
            "require" => postgres::config::SslMode::Require,
            _ => postgres::config::SslMode::Prefer,
        });
        let tls = crate::tls::store_config(ca.map(std::path::Path::new), verify)?;
        // tokio-postgres bounds only the TCP connect by `connect_timeout`; a server that
        // accepts and never speaks would hold the start-up forever. Bound all of it.
        let bound = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(bound);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postgres-connect".into())
            .spawn(move || {
                let _ = tx.send(config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)));
            })?;
        let client = match rx.recv_timeout(bound) {
            Ok(r) => r.map_err(|e| anyhow::anyhow!("cannot connect to {shown}: {e}"))?,
            Err(_) => anyhow::bail!(
                "cannot connect to {shown}: no answer within {} (connect_timeout)",
                humantime::format_duration(bound)
            ),
        };
        Ok(Self {
            client,
            prepared: std::collections::HashMap::new(),
        })
    }
}

/// Takes the listed query parameters out of a URL (blockprobe handles them, not
/// tokio-postgres), returning the rest of the URL and what was taken.
fn take_params(url: &str, names: &[&str]) -> (String, Vec<(String, String)>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_owned(), Vec::new());
    };
    let (taken, rest): (Vec<_>, Vec<_>) = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .partition(|(k, _)| names.contains(&k.as_str()));
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    (parsed.to_string(), taken)
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Db for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        let stmt = self.statement(sql)?;
        Ok(self.client.execute(&stmt, &refs(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Vec<Value>>> {
        let rows = self.client.query(sql, &refs(params))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut r = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let t = col.type_();
                r.push(if *t == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i)?
                        .map_or(Value::Null, Value::Int)
                } else if *t == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)?
                        .map_or(Value::Null, |v| Value::Int(v.into()))
                } else if *t == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i)?
                        .map_or(Value::Null, |v| Value::Int(v.into()))
                } else {
                    row.try_get::<_, Option<String>>(i)?
                        .map_or(Value::Null, Value::Text)
                });
            }
            out.push(r);
        }
        Ok(out)
    }

    fn try_lock(&mut self, key: &str, _holder: &str) -> anyhow::Result<bool> {
        // A stable 64-bit key from the host name (FNV-1a).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("blockprobe:{key}").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let k = i64::from_ne_bytes(h.to_ne_bytes());
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&k])?;
        Ok(row.get::<_, bool>(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (rest, taken) = take_params(
            "postgres://u@db.example/m?sslmode=verify-full&application_name=bp&sslrootcert=/etc/ca.pem",
            &["sslrootcert", "sslmode"],
        );
        assert_eq!(rest, "postgres://u@db.example/m?application_name=bp");
        assert_eq!(
            taken,
            vec![
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), "/etc/ca.pem".to_owned())
            ]
        );
        assert_eq!(
            take_params("postgres://u@h/m?sslmode=require", &["sslmode"]).0,
            "postgres://u@h/m"
        );
    }
}
